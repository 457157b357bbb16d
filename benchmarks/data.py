"""Data benchmark (issue #2): are HDF5 shards a better frame store than JPEG folders?

    python -m benchmarks.data [--size 240] [--frames 64] [--clips 300]

Generates synthetic videos at a realistic frame size, extracts them into shards
with the pipeline's own `extract_shard` (frames/s), copies the very same JPEG
bytes into the one-file-per-frame folders most video toolboxes use, then reads
the same random 32-frame clips from both layouts (clips/s), and counts files and
bytes. The issue's goal: shards >= 1.5x the folders' clips/s, far fewer files,
no more bytes. Figures go to benchmarks/measured.json (section "data").

Clips are read twice over: first with both layouts' files evicted from the page
cache (each file's first read comes from the disk), then warm (the per-clip cost
of the format alone). Unfiltered copies of the shards give the cost of their
Fletcher-32 checksums. The two layouts read the same windows in turn, so a busy
machine slows both alike. On a cluster file system every file open is also a
metadata round trip, which this local disk does not show.
"""

import argparse
import json
import os
import platform
import random
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from coclr.shards import VIDEOS, create_shard, decode_jpegs, frame_store, list_videos
from coclr.frames import extract_shard
from coclr.ingest import ucf101
from coclr.ingest.manifest import build_manifest
from coclr.synthetic import design, generate

MEASURED = Path(__file__).with_name("measured.json")
CLIP = 32


# -- shared by the benchmark scripts ---------------------------------------------------
def machine() -> str:
    """What the figures were measured on, in words."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)"
    return f"CPU only: {os.cpu_count()} cores, {platform.processor() or platform.machine()}"


def record(section: str, figures: dict) -> None:
    """Store a script's figures in measured.json (what cost_model.py reads), with machine and date."""
    measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    measured[section] = {"machine": machine(), "date": date.today().isoformat(), **figures}
    MEASURED.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")


def print_table(rows: list, headers: list) -> None:
    """A Markdown table, so the output pastes into docs/benchmarks.md as is."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [headers, ["-" * w for w in widths], *cells]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def make_shards(root, size=240, frames=64, videos_per_shard=12, seed=0) -> dict:
    """Synthetic videos (24, UCF101 layout) -> manifest -> frame shards, as the pipeline does.

    Returns the manifest, the shard paths and the extraction figures.
    """
    root = Path(root)
    videos = root / "videos"
    cfg = design(classes=4, train_groups=2, test_groups=1, clips_per_group=2, frames=frames, size=size, seed=seed)
    generate(cfg, videos, workers=2)
    manifest, _, _ = build_manifest(ucf101.entries(videos, videos, name="synthetic"), videos_per_shard)
    shards, total = [], {"frames": 0, "seconds": 0.0}
    for shard, rows in manifest.groupby("shard"):
        path = root / "frames" / f"shard_{shard:05d}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        summary = extract_shard(rows, path)
        total["frames"] += summary["frames"]
        total["seconds"] += summary["seconds"]
        shards.append(path)
    extraction = {"frames": total["frames"], "frames_per_s": total["frames"] / total["seconds"],
                  "frame_size": f"{size}x{size}"}
    return {"manifest": manifest, "shards": shards, "extraction": extraction}


# -- the folder layout -----------------------------------------------------------------
def write_folders(store, out) -> list:
    """The shards' JPEG bytes, one file per frame: <out>/<video_id>/img_00001.jpg."""
    video_ids = sorted(store.index)
    for video_id in video_ids:
        folder = Path(out) / video_id
        folder.mkdir(parents=True, exist_ok=True)
        for i, jpeg in enumerate(store.encoded(video_id)):
            (folder / f"img_{i + 1:05d}.jpg").write_bytes(jpeg.tobytes())
    return video_ids


def read_folder_clip(folder, start) -> torch.Tensor:
    """A clip from the folder layout with the shards' decoder: one file read per frame, then the same decode."""
    encoded = [np.fromfile(Path(folder) / f"img_{i + 1:05d}.jpg", dtype=np.uint8) for i in range(start, start + CLIP)]
    return torch.from_numpy(decode_jpegs(encoded))


def read_folder_clip_toolbox(folder, start) -> torch.Tensor:
    """A clip as common video toolboxes read frame folders: cv2.imread (BGR) and a BGR->RGB conversion per frame."""
    frames = [cv2.imread(str(Path(folder) / f"img_{i + 1:05d}.jpg"), cv2.IMREAD_COLOR)
              for i in range(start, start + CLIP)]
    return torch.from_numpy(np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]))


def disk_usage(paths) -> dict:
    """Files, bytes of content and bytes allocated (whole blocks: small files waste the rest)."""
    files = [p for p in paths if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "allocated": sum(p.stat().st_blocks * 512 for p in files)}


def evict(paths) -> None:
    """Drop these files (only these) from the page cache: the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def without_checksums(shards, out) -> list:
    """Copies of ``shards`` stored contiguous and unfiltered: what the shards cost before Fletcher-32."""
    copies = []
    for path in shards:
        copies.append(out / Path(path).name)
        out.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "r") as src, create_shard(copies[-1]) as dst:
            for video_id in list_videos(src):
                dataset = src[VIDEOS][video_id]
                dst[VIDEOS].create_dataset(video_id, data=dataset[()]).attrs.update(dataset.attrs)
    return copies


def clips_per_s(readers: dict, windows) -> dict:
    """Clips/s of each reader, reading the same windows in turn (a busy machine slows both alike)."""
    seconds = dict.fromkeys(readers, 0.0)
    for video_id, first in windows:
        for name, read in readers.items():
            start = time.perf_counter()
            read(video_id, first)
            seconds[name] += time.perf_counter() - start
    return {name: len(windows) / s for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=240, help="frame side in pixels (square synthetic frames)")
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--clips", type=int, default=300, help="random 32-frame clips read per layout")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        made = make_shards(tmp, args.size, args.frames)
        store = frame_store(made["shards"])
        video_ids = write_folders(store, tmp / "folders")
        rng = random.Random(0)
        windows = []
        for _ in range(args.clips):
            video_id = rng.choice(video_ids)
            windows.append((video_id, rng.randrange(store.num_frames(video_id) - CLIP + 1)))
        unchecked = frame_store(without_checksums(made["shards"], tmp / "unchecked"))
        readers = {"shards": lambda v, s: store.read(v, s, s + CLIP),
                   "unchecked": lambda v, s: unchecked.read(v, s, s + CLIP),
                   "folders": lambda v, s: read_folder_clip(tmp / "folders" / v, s),
                   "toolbox": lambda v, s: read_folder_clip_toolbox(tmp / "folders" / v, s)}
        # The decode alone, on bytes already in memory: no layout can read clips faster than this.
        in_memory = {(v, s): [buf.copy() for buf in store.encoded(v, s, s + CLIP)] for v, s in windows}
        files = {"shards": made["shards"], "folders": [p for p in (tmp / "folders").rglob("*") if p.is_file()]}
        files["toolbox"] = files["folders"]
        files["unchecked"] = unchecked.paths
        evict(files["shards"] + files["folders"] + files["unchecked"])
        cold = clips_per_s(readers, windows[:len(video_ids)])  # first touch of each layout's files
        warm = clips_per_s({**readers, "decode": lambda v, s: decode_jpegs(in_memory[v, s])}, windows)
        bound = warm.pop("decode")
        shards, folders = disk_usage(files["shards"]), disk_usage(files["folders"])
        n_frames = made["extraction"]["frames"]
    layouts = {"shards": shards, "folders": folders, "toolbox": folders}
    figures = {
        "extraction": made["extraction"],
        "videos": len(video_ids), "frames": n_frames, "clip_frames": CLIP,
        **{name: {**usage, "clips_per_s": warm[name], "cold_clips_per_s": cold[name],
                  "bytes_per_frame": usage["bytes"] / n_frames} for name, usage in layouts.items()},
        "speedup": warm["shards"] / warm["folders"], "cold_speedup": cold["shards"] / cold["folders"],
        "speedup_vs_toolbox": warm["shards"] / warm["toolbox"], "cold_speedup_vs_toolbox": cold["shards"] / cold["toolbox"],
        "decode_only_clips_per_s": bound, "speedup_bound": bound / warm["folders"],
        "unchecked_clips_per_s": warm["unchecked"], "checksum_cost": warm["unchecked"] / warm["shards"] - 1,
    }
    record("data", figures)
    print(f"{machine()}; {len(video_ids)} synthetic videos of {args.frames} frames at {args.size}x{args.size}\n")
    print(f"frame extraction (decode + JPEG q90 + HDF5): {made['extraction']['frames_per_s']:.0f} frames/s, one process\n")
    rows = [[label, f"{warm[name]:.1f}", f"{cold[name]:.1f}", layouts[name]["files"],
             f"{layouts[name]['bytes'] / 2**20:.2f}", f"{layouts[name]['allocated'] / 2**20:.2f}"]
            for name, label in (("shards", "HDF5 shards"), ("folders", "JPEG folders, same decoder"),
                                ("toolbox", "JPEG folders, imread + BGR->RGB"))]
    rows.append(["shards / folders (same decoder)", f"{figures['speedup']:.2f}x", f"{figures['cold_speedup']:.2f}x",
                 f"{shards['files'] / folders['files']:.4f}x", f"{shards['bytes'] / folders['bytes']:.3f}x",
                 f"{shards['allocated'] / folders['allocated']:.3f}x"])
    rows.append(["shards / folders (toolbox reader)", f"{figures['speedup_vs_toolbox']:.2f}x",
                 f"{figures['cold_speedup_vs_toolbox']:.2f}x", "", "", ""])
    rows.append(["HDF5 shards without Fletcher-32 checksums", f"{warm['unchecked']:.1f}", f"{cold['unchecked']:.1f}",
                 "", "", ""])
    rows.append(["checksums' cost (time per clip)", f"+{100 * figures['checksum_cost']:.1f} %", "", "", "", ""])
    rows.append(["decode alone (bytes in memory)", f"{bound:.1f}", "", "", "", ""])
    rows.append(["decode alone / folders (same decoder): the most any layout can gain", f"{figures['speedup_bound']:.2f}x",
                 "", "", "", ""])
    print_table(rows, ["layout", f"{CLIP}-frame clips/s (page cache)", "clips/s (first read from disk)",
                       "files", "MiB", "MiB allocated"])


if __name__ == "__main__":
    main()
