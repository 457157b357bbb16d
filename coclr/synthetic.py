"""The embedded synthetic dataset: motion-defined action classes as AVI files in UCF101's layout.

Why it looks the way it does (measurements in docs/synthetic.md):

* The class is a motion pattern of one or two "actor" sprites. Everything that is
  visible in a single frame (background texture, sprite shape, colours, textures,
  positions) is drawn at random, independently of the class. RGB instance
  discrimination can therefore succeed on appearance alone, which is the shortcut
  that makes InfoNCE on RGB weak and that CoCLR's flow-mined positives overcome.
* Appearance is shared by the clips of one group (``gNN``), as in UCF101, and train
  and test use disjoint groups, so appearance never transfers from train to test.
* Optical flow carries the class; it is estimated by TV-L1 from the compressed video,
  and speed, phase, period, sense and the number of actors vary per clip. Camera pan,
  camera shake and drifting distractor sprites are available as nuisances, off by
  default: a pan constant within a clip turned out to be an instance shortcut for flow
  InfoNCE, and all three slow down learning motion from RGB.
* Actors are large (half the frame), fast and on a smooth background, because RGB must
  be able to learn motion within a CPU training budget (UberNCE collapsed otherwise).
* Every motion class is invariant under a horizontal flip (a flip augmentation must
  not turn one class into another): "sideways" rather than "left" and "right",
  "spin" rather than clockwise and counter-clockwise.

Every video is rendered from its own seed, derived from (seed, class, group, clip),
so the output does not depend on the number of workers or on which videos are made.
"""

import argparse
import logging
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from coclr.config import generator_defaults

log = logging.getLogger(__name__)

# Motion classes. Each entry maps frame index t and the clip's random draw `p` to the
# actor's pose relative to its start: (dx, dy) in pixels at a 40-pixel frame, rotation
# in degrees, log-scale. `p.v` is a speed in [0.75, 1.25] times Config.speed, `p.sign`
# is +-1, `p.phase` in [0, 2*pi), `p.period` in frames; image y points down.
MOTIONS = {
    "RiseUp": lambda t, p: (0.0, -1.3 * p.v * t, 0.0, 0.0),
    "FallDown": lambda t, p: (0.0, 1.3 * p.v * t, 0.0, 0.0),
    "SlideSideways": lambda t, p: (1.3 * p.v * p.sign * t, 0.0, 0.0, 0.0),
    "Spin": lambda t, p: (0.0, 0.0, 12.0 * p.v * p.sign * t, 0.0),
    "Grow": lambda t, p: (0.0, 0.0, 0.0, 0.055 * p.v * t),
    "Shrink": lambda t, p: (0.0, 0.0, 0.0, -0.055 * p.v * t),
    "SwingSideways": lambda t, p: (5.5 * p.v * math.sin(2 * math.pi * t / p.period + p.phase), 0.0, 0.0, 0.0),
    "Bounce": lambda t, p: (0.0, 5.5 * p.v * math.sin(2 * math.pi * t / p.period + p.phase), 0.0, 0.0),
    "Orbit": lambda t, p: (
        6.0 * math.cos(0.6 * p.v * p.sign * t + p.phase),
        6.0 * math.sin(0.6 * p.v * p.sign * t + p.phase),
        0.0,
        0.0,
    ),
    "Pulse": lambda t, p: (0.0, 0.0, 0.0, 0.35 * math.sin(2 * math.pi * t / p.period + p.phase)),
}


@dataclass(frozen=True)
class Config:
    """Dataset design (``datasets.<d>.generate``; defaults and meanings in the schema, docs/settings.md).
    Pixel quantities are for a 40-pixel frame and scale with `size`."""

    classes: int
    train_groups: int  # groups test_groups+1 .. test_groups+train_groups
    test_groups: int  # groups 1 .. test_groups, as UCF101 split 1
    clips_per_group: int
    frames: int
    size: int
    fps: int
    seed: int
    pan: float  # maximum camera speed, pixels per frame
    shake: float  # camera jitter: standard deviation of a per-frame offset, pixels
    distractors: int  # drifting sprites that do not carry the class
    distractor_speed: float  # maximum distractor speed, pixels per frame
    speed: float  # multiplies every motion amplitude in MOTIONS
    actor_size: float  # mean side of an actor sprite, fraction of the frame
    grain: float  # background texture feature size is size / grain


def design(**given) -> Config:
    """A :class:`Config` with every parameter not ``given`` at its schema default."""
    return Config(**{**generator_defaults(), **given})


@dataclass(frozen=True)
class VideoSpec:
    cls: str
    label: int  # 1-based, as classInd.txt
    group: int
    clip: int

    @property
    def path(self) -> str:
        return f"{self.cls}/v_{self.cls}_g{self.group:02d}_c{self.clip:02d}.avi"


class _Draw:
    """The random parameters of one actor's motion (see MOTIONS)."""

    def __init__(self, rng: np.random.Generator, speed: float):
        self.v = rng.uniform(0.75, 1.25) * speed
        self.sign = rng.choice([-1.0, 1.0])
        self.phase = rng.uniform(0, 2 * math.pi)
        self.period = rng.uniform(6.0, 10.0)


def class_names(n: int) -> list[str]:
    names = list(MOTIONS)
    if not 1 <= n <= len(names):
        raise ValueError(f"between 1 and {len(names)} classes are defined, asked for {n}")
    return names[:n]


def video_specs(cfg: Config) -> list[VideoSpec]:
    groups = range(1, cfg.test_groups + cfg.train_groups + 1)
    return [
        VideoSpec(name, label, g, c)
        for label, name in enumerate(class_names(cfg.classes), start=1)
        for g in groups
        for c in range(1, cfg.clips_per_group + 1)
    ]


def is_test(cfg: Config, spec: VideoSpec) -> bool:
    return spec.group <= cfg.test_groups


def _rng(cfg: Config, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, *key]))


def _texture(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Natural-looking colour texture: band-pass noise at a few scales mapped through a random palette."""
    field = np.zeros((h, w), np.float32)
    for octave in range(3):
        sigma = scale * rng.uniform(0.8, 4.0) / 2**octave
        noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), max(sigma, 0.5))
        field += noise / (noise.std() + 1e-6) * 0.6**octave
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    field += rng.uniform(0, 1.5) * ((gx * math.cos(angle) + gy * math.sin(angle)) / max(h, w) * 2 - 1)
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    palette = rng.uniform(0, 255, (3, 3)).astype(np.float32)  # 3 colours
    lo, hi = np.clip(field * 2, 0, 1)[..., None], np.clip(field * 2 - 1, 0, 1)[..., None]
    return palette[0] * (1 - lo) + palette[1] * (lo - hi) + palette[2] * hi


def _sprite(rng: np.random.Generator, k: int) -> np.ndarray:
    """A textured RGBA sprite of side k: ellipse, polygon or blob, with a soft edge."""
    rgb = _texture(rng, k, k, k / 8)
    mask = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    kind = rng.integers(3)
    if kind == 0:
        axes = (int(k * rng.uniform(0.32, 0.48)), int(k * rng.uniform(0.25, 0.48)))
        cv2.ellipse(mask, (int(c), int(c)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    elif kind == 1:
        n = rng.integers(5, 9)
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = k * rng.uniform(0.32, 0.48, n)
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0)
    else:
        blob = cv2.GaussianBlur(rng.standard_normal((k, k)).astype(np.float32), (0, 0), k / 6)
        yy, xx = np.mgrid[0:k, 0:k]
        falloff = 1 - ((yy - c) ** 2 + (xx - c) ** 2) / (k / 2) ** 2
        mask = ((blob / (blob.std() + 1e-6) + 2.5 * falloff) > 1.2).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.6)
    return np.dstack([rgb, mask])


def _paste(frame: np.ndarray, sprite: np.ndarray, cx: float, cy: float, angle: float, scale: float) -> None:
    """Alpha-composite `sprite`, rotated and scaled about its centre, centred at (cx, cy)."""
    k = sprite.shape[0]
    m = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), angle, scale)
    m[:, 2] += (cx - (k - 1) / 2, cy - (k - 1) / 2)
    h, w = frame.shape[:2]
    warped = cv2.warpAffine(sprite, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = warped[..., 3:]
    frame *= 1 - alpha
    frame += warped[..., :3] * alpha


def render(cfg: Config, spec: VideoSpec) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 and the actors' ground-truth motion (T, actors, 4).

    The motion rows are (x, y, rotation in degrees, log-scale) in frame coordinates
    (camera pan removed), i.e. what defines the class.
    """
    s, T, u = cfg.size, cfg.frames, cfg.size / 40
    look = _rng(cfg, spec.label, spec.group)  # appearance shared by the group's clips
    this = _rng(cfg, spec.label, spec.group, spec.clip)
    margin = int(math.ceil((cfg.pan * T + 3 * cfg.shake) * u)) + 2
    scene = _texture(look, 2 * s + 2 * margin, 2 * s + 2 * margin, s / cfg.grain)
    side = (cfg.actor_size - 0.05, cfg.actor_size + 0.05)
    actors = [_sprite(look, int(round(s * look.uniform(*side)))) for _ in range(2)]
    extras = [_sprite(look, int(round(s * look.uniform(0.18, 0.25)))) for _ in range(cfg.distractors)]

    gain = this.uniform(0.8, 1.2)
    origin = this.uniform(margin, margin + s, 2)  # where in the scene this clip was "shot"
    pan_dir, pan_speed = this.uniform(0, 2 * math.pi), this.uniform(0, cfg.pan) * u
    pan = np.arange(T)[:, None] * pan_speed * np.array([math.cos(pan_dir), math.sin(pan_dir)])
    if cfg.shake > 0:
        pan += np.clip(this.normal(0, cfg.shake * u, (T, 2)), -3 * cfg.shake * u, 3 * cfg.shake * u)

    n_actors = int(this.integers(1, 3))
    poses = np.zeros((T, n_actors, 4))
    for a in range(n_actors):
        draw = _Draw(this, cfg.speed)
        rel = np.array([MOTIONS[spec.cls](t, draw) for t in range(T)])
        rel[:, :2] *= u
        span = np.ptp(rel[:, :2], axis=0)
        lo = rel[:, :2].min(0)
        # place the whole trajectory inside the frame (centre band if it is too long)
        room = np.maximum(s - 0.35 * s - span, 0)
        start = 0.175 * s - lo + this.uniform(0, 1, 2) * room
        poses[:, a, :2] = rel[:, :2] + start
        poses[:, a, 2] = rel[:, 2] + this.uniform(0, 360)
        poses[:, a, 3] = rel[:, 3] + this.uniform(-0.15, 0.15)
    drift = [
        (this.uniform(0, s, 2), this.uniform(0, cfg.distractor_speed) * u, this.uniform(0, 2 * math.pi))
        for _ in extras
    ]

    video = np.empty((T, s, s, 3), np.uint8)
    for t in range(T):
        ox, oy = origin + pan[t]
        shift = np.float32([[1, 0, -ox], [0, 1, -oy]])
        frame = cv2.warpAffine(scene, shift, (s, s), flags=cv2.INTER_LINEAR)
        for sprite, (p0, speed, d) in zip(extras, drift):
            _paste(frame, sprite, p0[0] + speed * t * math.cos(d), p0[1] + speed * t * math.sin(d), 0.0, 1.0)
        for a in range(n_actors):
            x, y, angle, logscale = poses[t, a]
            _paste(frame, actors[a], x, y, angle, math.exp(logscale))
        video[t] = np.clip(frame * gain, 0, 255).astype(np.uint8)
    return video, poses


def _write_one(job: tuple[Config, VideoSpec, str]) -> None:
    from coclr.video import write_avi

    cfg, spec, out = job
    frames, _ = render(cfg, spec)
    write_avi(Path(out) / spec.path, frames, cfg.fps)


def generate(cfg: Config, out, workers: int = 2) -> None:
    """Write every video, then the split files: their presence marks a complete dataset."""
    from coclr.io import write_text

    out = Path(out)
    specs = video_specs(cfg)
    jobs = [(cfg, spec, str(out)) for spec in specs]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=8))
    else:
        for job in jobs:
            _write_one(job)
    # UCF101's split files use Windows line endings; so do ours.
    names = class_names(cfg.classes)
    write_text(out / "classInd.txt", "".join(f"{i} {n}\r\n" for i, n in enumerate(names, 1)))
    train = [f"{s.path} {s.label}\r\n" for s in specs if not is_test(cfg, s)]
    test = [f"{s.path}\r\n" for s in specs if is_test(cfg, s)]
    write_text(out / "trainlist01.txt", "".join(train))
    write_text(out / "testlist01.txt", "".join(test))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = generator_defaults()
    parser.add_argument("--out", required=True, help="output root (UCF101 layout)")
    for f in fields(Config):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=f.type, default=defaults[f.name])
    parser.add_argument("--workers", type=int, default=2)


def run(args: argparse.Namespace) -> None:
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)})
    start = time.time()
    generate(cfg, args.out, args.workers)
    n = len(video_specs(cfg))
    log.info(f"wrote {n} videos to {args.out} in {time.time() - start:.1f} s")
