"""``python -m coclr ingest``: the arguments, each format's listing, the manifest and its summary."""

import logging
import os
from pathlib import Path

import pandas as pd

from coclr.errors import CoclrError
from coclr.ingest import UNLABELLED, IngestError, folder, hmdb51, k400, ucf101
from coclr.ingest.k400 import K400_PATTERN
from coclr.ingest.manifest import build_manifest, short_videos, write_manifest, write_reports

log = logging.getLogger(__name__)

FORMATS = ("ucf101", "hmdb51", "k400", "synthetic", "folder")


def add_listing_arguments(parser) -> None:
    """Where the videos and their split files are: shared with ``coclr split-table``."""
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--root", required=True, help="dataset root; manifest paths and video_ids are relative to it "
                        "(folder format: a folder, or a CSV listing the videos)")
    parser.add_argument("--splits-dir", help="folder of the split files (UCF101, HMDB51, synthetic; default: --root)")
    parser.add_argument("--split", type=int, nargs="+", default=[1], choices=(1, 2, 3),
                        help="official split number(s) (default 1); the first says what is train and test here")
    parser.add_argument("--annotations", nargs="+", default=[], metavar="CSV", help="Kinetics CSVs (train, validate)")
    parser.add_argument("--k400-pattern", default=K400_PATTERN, help=f"clip path under --root (default {K400_PATTERN})")
    parser.add_argument("--classes", help="folder format: classInd.txt fixing the class numbers (default: sorted names)")
    parser.add_argument("--test-fraction", type=float,
                        help="folder format: share of groups held out as test where no split is given (ingest.test_fraction)")
    parser.add_argument("--clip-frames", type=int,
                        help="frames one clip spans (clip.frames x clip.stride): videos shorter are counted")
    parser.add_argument("--fps", type=float, help="frame rate the frames are extracted at (frames.fps; default native)")


def add_arguments(parser) -> None:
    add_listing_arguments(parser)
    parser.add_argument("--videos-per-shard", type=int, required=True)
    parser.add_argument("--out", required=True, help="manifest CSV; reports go to <out>.missing.txt / .unreadable.txt")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="probing threads")
    parser.add_argument("--strict", action="store_true",
                        help="fail if any listed video is missing or unreadable, or any listing line is rejected")


def entries_for(args, split, rejected=None) -> pd.DataFrame:
    """The listed videos of ``args.format`` in official split ``split``, before probing; unusable lines go
    to ``rejected``."""
    if args.format == "folder":
        return folder.entries(args.root, args.test_fraction, args.classes, rejected)
    if not Path(args.root).is_dir():
        raise IngestError(f"dataset root {args.root} is not a directory: set --root (datasets.{args.format}.root in config.yaml)")
    splits_dir = args.splits_dir or args.root
    if args.format == "hmdb51":
        return hmdb51.entries(args.root, splits_dir, split, rejected)
    if args.format == "k400":
        return k400.entries(args.root, args.annotations, args.k400_pattern)
    return ucf101.entries(args.root, splits_dir, split, name=args.format, rejected=rejected)


def _report(kind, items, out, suffix, total=None, show=5) -> None:
    """The count of one kind of bad input on stderr, with the first few messages."""
    if items:
        log.warning(f"ingest: {len(items)}{f' of {total}' if total else ''} {kind}, see {out}.{suffix}.txt")
        for item in items[:show]:
            log.warning("  " + (item if isinstance(item, str) else ": ".join(map(str, item))))
        if len(items) > show:
            log.warning(f"  ... and {len(items) - show} more")


def listed_entries(args, rejected=None) -> pd.DataFrame:
    """Every video of the splits ``args.split``, once: the manifest the shards are cut from.

    Train and test are those of the first split (pretraining reads its training
    videos); videos only a later split lists (HMDB51 leaves some videos out of each
    split) are kept as ``unused``, so that each video is extracted once for all splits.
    ``coclr split-table`` then gives each split its own train/test table.
    """
    first, *later = (entries_for(args, split, rejected) for split in args.split)
    extra = pd.concat([first.iloc[:0], *later]).drop_duplicates("video_id")
    extra = extra[~extra["video_id"].isin(first["video_id"])].assign(split="unused")
    if rejected:  # a bad line of a file that several splits read is reported once
        rejected[:] = list(dict.fromkeys(rejected))
    return pd.concat([first, extra], ignore_index=True)


def run(args) -> None:
    rejected = None if args.strict else []
    try:
        manifest, missing, unreadable = build_manifest(listed_entries(args, rejected), args.videos_per_shard,
                                                       args.workers, rejected)
    except IngestError as error:
        raise IngestError(f"ingest: {error}") from None
    rejected = rejected or []
    write_reports(args.out, missing, unreadable, rejected)  # before any refusal: they say what to fix
    total = len(manifest) + len(missing) + len(unreadable)
    _report("listing lines rejected", rejected, args.out, "rejected")
    _report("listed videos missing on disk", missing, args.out, "missing", total)
    _report("listed videos unreadable", unreadable, args.out, "unreadable", total)
    if args.strict and (missing or unreadable):
        raise CoclrError("ingest: --strict: every listed video must be present and readable (reports above)")
    if manifest.empty:
        raise CoclrError(f"ingest: none of the {total} listed videos is readable under {args.root}: check --root")
    write_manifest(args.out, manifest)
    counts = manifest["split"].value_counts()
    labelled = manifest["label"] != UNLABELLED
    classes = f"{manifest.loc[labelled, 'label'].nunique()} classes" if labelled.all() else "unlabelled"
    unused = f", {counts['unused']} only in later splits" if counts.get("unused", 0) else ""
    log.info(f"ingest: {len(manifest)} videos ({counts.get('train', 0)} train, {counts.get('test', 0)} test{unused}), "
             f"{classes}, {manifest['shard'].max() + 1} shards -> {args.out}")
    for split in ("train", "test") if labelled.all() else ("train",):  # unlabelled videos are never tested
        if not counts.get(split, 0):
            log.warning(f"ingest: no {split} videos: pretraining needs train videos and evaluation test videos; give a "
                        "`split` column (folder format: a CSV) or change ingest.test_fraction")
    if args.clip_frames:
        short = short_videos(manifest, args.clip_frames, args.fps)
        log.info(f"ingest: {short} of {len(manifest)} videos are shorter than one clip ({args.clip_frames} frames"
                 f"{f' at {args.fps:g} fps' if args.fps else ''}); clips of them are sampled as coclr/clips.py does "
                 "for short videos")
