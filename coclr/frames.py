"""Frame extraction: decode the videos of one shard into an HDF5 file of JPEGs.

One Snakemake job per shard, so a cluster extracts shards in parallel. A video
that cannot be decoded does not kill its shard: it is recorded in the shard's
``failures`` attribute, counted in the job's summary line and excluded
downstream (``--strict`` makes it fatal instead).
"""

import json
import logging
import time

import pandas as pd

from coclr.errors import CoclrError
from coclr.shards import create_shard, encode_jpegs, write_video
from coclr.io import atomic_path
from coclr.video import VideoError, decode

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest CSV written by `coclr ingest`")
    parser.add_argument("--shard", type=int, required=True, help="shard index (manifest column `shard`)")
    parser.add_argument("--out", required=True, help="HDF5 shard to write")
    parser.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: native)")
    parser.add_argument("--short-side", type=int, default=None, help="resize so the short side has this length")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--strict", action="store_true", help="stop at the first undecodable video")


def extract_shard(videos: pd.DataFrame, out, fps=None, short_side=None, jpeg_quality=90, strict=False) -> dict:
    """Write the frames of ``videos`` (manifest rows) into one shard; return a summary."""
    failures, n_frames, start = [], 0, time.time()
    with atomic_path(out) as tmp, create_shard(tmp) as f:
        for row in videos.itertuples():
            try:
                frames = decode(row.path, fps=fps, short_side=short_side)
            except VideoError as err:
                if strict:
                    raise
                failures.append({"video": row.video_id, "error": str(err)})
                continue
            write_video(f, row.video_id, encode_jpegs(frames, jpeg_quality), fps=float(fps or row.fps),
                        height=frames.shape[1], width=frames.shape[2])
            n_frames += len(frames)
        f.attrs["failures"] = json.dumps(failures)
        f.attrs["kind"] = "frames"
        f.attrs["settings"] = json.dumps({"fps": fps, "short_side": short_side, "jpeg_quality": jpeg_quality})
    seconds = time.time() - start
    return {"videos": len(videos) - len(failures), "failed": len(failures), "frames": n_frames,
            "seconds": seconds, "frames_per_s": n_frames / max(seconds, 1e-9)}


def run(args) -> None:
    manifest = pd.read_csv(args.manifest)
    videos = manifest[manifest["shard"] == args.shard]
    if videos.empty:
        raise CoclrError(f"{args.manifest} has no videos in shard {args.shard}: rerun `coclr ingest` or fix --shard")
    summary = extract_shard(videos, args.out, args.fps, args.short_side, args.jpeg_quality, args.strict)
    log.info(f"shard {args.shard}: {summary['videos']} videos, {summary['failed']} failed, "
             f"{summary['frames']} frames, {summary['frames_per_s']:.0f} frames/s -> {args.out}")
