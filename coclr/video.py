"""ffmpeg access: the binary, video metadata, decoding and writing.

No apt step is assumed: when no ``ffmpeg`` is on PATH we use the binary that the
``imageio-ffmpeg`` wheel ships. There is no ``ffprobe`` in that wheel, so
metadata is read by other means (see :func:`probe`).

Every ffmpeg call runs with ``-nostdin`` (a background job must never wait on a
terminal) and a timeout, and a failure becomes :class:`VideoError` carrying the
path and ffmpeg's own message.
"""

import functools
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from coclr.io import atomic_path

# Generous: a 10 s Kinetics clip decodes in about a second; only a stuck
# ffmpeg (e.g. a file on a dead network mount) comes near this.
TIMEOUT_S = 600

# Motion JPEG at high quality (q 2) without chroma subsampling: every build of
# ffmpeg and OpenCV reads it, frames are independent, the round trip is off by
# 1-3 grey levels on average, and files are ~4x smaller than lossless ones.
AVI_CODEC = {"vcodec": "mjpeg", "pix_fmt": "yuvj444p", "q:v": 2}


class VideoError(RuntimeError):
    """A video that cannot be read; ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason.strip()
        super().__init__(f"{self.path}: {self.reason}")


@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: the one on PATH, else imageio-ffmpeg's."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(path, args, stdin=None) -> bytes:
    """Run ffmpeg ``args``; return stdout, or raise VideoError with ffmpeg's message."""
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VideoError(path, f"ffmpeg did not finish within {TIMEOUT_S} s") from None
    message = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0 or message:  # at -v error, anything printed is an error
        raise VideoError(path, message or f"ffmpeg exited with status {done.returncode}")
    return done.stdout


def probe(path) -> dict:
    """Frame count, fps and displayed size of a video, read from its container header.

    OpenCV answers in milliseconds without decoding; when it cannot (no frame
    count, unknown container) we parse the banner of ``ffmpeg -i``. The frame
    count is the header's: a truncated file is only caught by :func:`decode`.
    Width and height are those of the decoded frames: ffmpeg applies a rotation
    in the metadata (phone videos), so a quarter turn swaps them.
    """
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            meta = dict(
                num_frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
                fps=float(cap.get(cv2.CAP_PROP_FPS)),
                width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
            # OpenCV reports the displayed size only when it auto-rotates (its default since 4.5).
            if int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90 and not cap.get(cv2.CAP_PROP_ORIENTATION_AUTO):
                meta["width"], meta["height"] = meta["height"], meta["width"]
            if min(meta.values()) > 0:
                return meta
    finally:
        cap.release()
    return _probe_ffmpeg(path)


def _probe_ffmpeg(path) -> dict:
    """Metadata from ``ffmpeg -i`` stderr: Duration line, first video stream line, its rotation."""
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)]
    try:
        banner = subprocess.run(args, capture_output=True, timeout=TIMEOUT_S).stderr
    except subprocess.TimeoutExpired:
        raise VideoError(path, f"ffmpeg -i did not finish within {TIMEOUT_S} s") from None
    banner = banner.decode(errors="replace")
    stream = re.search(r"Stream #.*?Video: .*?(\d{2,5})x(\d{2,5}).*?([\d.]+) (?:fps|tbr)", banner)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", banner)
    if not (stream and duration):
        others = re.findall(r"Stream #\S+ (\w+):", banner)
        if others and "Video" not in others:
            raise VideoError(path, f"no video stream (the file holds only {', '.join(sorted(set(others))).lower()})")
        reason = banner.strip().splitlines()[-1] if banner.strip() else "no output from ffmpeg -i"
        raise VideoError(path, f"not a readable video ({reason})")
    hours, minutes, seconds = duration.groups()
    fps = float(stream.group(3))
    width, height = int(stream.group(1)), int(stream.group(2))
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", banner[stream.end():])
    if rotation and round(float(rotation.group(1))) % 180 == 90:
        width, height = height, width
    return dict(
        num_frames=round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * fps),
        fps=fps,
        width=width,
        height=height,
    )


def resized_shape(width: int, height: int, short_side: int) -> tuple:
    """(width, height) with the shorter side ``short_side``, aspect kept, both even."""
    if short_side % 2:
        raise ValueError(f"short_side must be even (yuv chroma planes need it), got {short_side}")
    scale = short_side / min(width, height)
    long_side = max(2, 2 * round(max(width, height) * scale / 2))
    return (short_side, long_side) if width <= height else (long_side, short_side)


def decode(path, fps=None, short_side=None) -> np.ndarray:
    """All frames of a video as uint8 RGB (T, H, W, 3), optionally resampled and resized.

    ``fps`` resamples in time by dropping or repeating frames (ffmpeg's fps
    filter); without it every stored frame comes once (a variable frame rate
    stays variable: its manifest ``fps`` is the average). ``short_side``
    resizes so the shorter side has that many pixels. A rotation in the
    metadata is applied (see :func:`probe`).
    Any error ffmpeg reports (truncated file, corrupt packet) raises
    :class:`VideoError`: a partly decoded clip would silently disagree with the
    frame count recorded in the manifest.
    """
    meta = probe(path)
    width, height = meta["width"], meta["height"]
    stream = ffmpeg.input(str(path))
    if fps is not None:
        stream = stream.filter("fps", fps=fps)
    if short_side is not None:
        width, height = resized_shape(width, height, short_side)
        stream = stream.filter("scale", width, height)
    # passthrough: every frame once, as stored. ffmpeg's default for raw output is a constant
    # rate, which repeats frames of a variable-frame-rate video (phones) to fill the gaps.
    stream = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    args = stream.global_args("-nostdin", "-hide_banner", "-v", "error").compile(cmd=ffmpeg_exe())
    raw = _run(path, args)
    frame_bytes = width * height * 3
    if not raw:
        raise VideoError(path, "ffmpeg decoded zero frames")
    if len(raw) % frame_bytes:
        raise VideoError(path, f"decoded {len(raw)} bytes, not a whole number of {width}x{height} frames")
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def write_avi(path, frames: np.ndarray, fps: float) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as an MJPEG AVI (see ``AVI_CODEC``), atomically."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"write_avi wants uint8 frames (T, H, W, 3) with T > 0, got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    with atomic_path(path) as tmp:
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=fps)
        stream = stream.output(str(tmp), format="avi", r=fps, **AVI_CODEC)
        args = stream.global_args("-hide_banner", "-v", "error").compile(cmd=ffmpeg_exe(), overwrite_output=True)
        _run(path, args, stdin=np.ascontiguousarray(frames).tobytes())
