"""Manifest of one dataset: the single table every later stage reads.

The official split files say which videos exist, their class and their split;
the manifest adds each video's metadata (from :func:`coclr.video.probe`) and a
shard number, so frame extraction and flow can run as one Snakemake job per
shard. One row per video, columns ``COLUMNS``.

Videos that are listed but absent on disk, or present but unreadable, are left
out of the manifest and written to ``<out>.missing.txt`` / ``<out>.unreadable.txt``
(both always written, possibly empty), with a count on stderr: downloads of
Kinetics are never complete, and a silent gap would bias every number after.
``--strict`` makes either list fatal.
"""

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from coclr.io import atomic_path, write_text
from coclr.video import VideoError, probe

LISTED = ["video_id", "path", "label", "class_name", "split", "group"]  # from the split files
COLUMNS = LISTED + ["num_frames", "fps", "width", "height", "shard"]
FORMATS = ("ucf101", "hmdb51", "k400", "synthetic")
# Where the common Kinetics downloaders put a clip; {split} is "train" or "val".
K400_PATTERN = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


class IngestError(ValueError):
    """A problem with the dataset's files or the arguments; the message says the fix."""


def _lines(path, fields, expected):
    """(where, words) of each non-blank line, checked to have ``fields`` words.

    CRLF endings and trailing blanks, as in the official files, are tolerated.
    """
    text = Path(path).read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if words:
            where = f"{path} line {n}"
            if len(words) not in fields:
                raise IngestError(f"{where}: expected '{expected}', got '{line.strip()}'")
            yield where, words


def _require(splits_dir, filename, name):
    """``splits_dir/filename`` if it exists, else an error naming the setting to fix."""
    path = Path(splits_dir) / filename
    if not path.is_file():
        raise IngestError(f"{filename} not found in {splits_dir}: set --splits-dir "
                          f"(datasets.{name}.splits_dir in config.yaml) to the folder of the split files")
    return path


def _row(root, rel, label, class_name, split, group):
    rel = Path(rel)
    return dict(video_id=rel.with_suffix("").as_posix(), path=os.path.abspath(Path(root) / rel),
                label=label, class_name=class_name, split=split, group=group)


def ucf101_entries(root, splits_dir, split=1, name="ucf101") -> pd.DataFrame:
    """Rows of UCF101 split ``split`` from classInd.txt, trainlist0N.txt and testlist0N.txt.

    The synthetic dataset is written in this exact layout, so it comes here too.
    """
    class_file = _require(splits_dir, "classInd.txt", name)
    classes = {class_name: int(index) - 1 for _, (index, class_name) in _lines(class_file, {2}, "<index> <Class>")}
    rows = []
    for split_name, list_name in (("train", "trainlist"), ("test", "testlist")):
        list_file = _require(splits_dir, f"{list_name}0{split}.txt", name)
        for where, (rel, *given) in _lines(list_file, {1, 2}, "<Class>/<video>.avi [<index>]"):
            class_name = rel.split("/")[0]
            if class_name not in classes:
                raise IngestError(f"{where}: class folder '{class_name}' is not in {class_file}")
            label = classes[class_name]
            if given and int(given[0]) != label + 1:
                raise IngestError(f"{where}: label {given[0]} disagrees with {class_file} ({class_name} = {label + 1})")
            source = re.search(r"_g(\d+)_c\d+$", Path(rel).stem)
            if not source:
                raise IngestError(f"{where}: '{rel}' does not follow UCF101's v_<Class>_gNN_cNN naming")
            rows.append(_row(root, rel, label, class_name, split_name, f"{class_name}_g{source.group(1)}"))
    return pd.DataFrame(rows, columns=LISTED)


def hmdb51_entries(root, splits_dir, split=1) -> pd.DataFrame:
    """Rows of HMDB51 split ``split`` from the ``<class>_test_splitN.txt`` files.

    Each line is ``<video>.avi <0|1|2>``: 1 train, 2 test, 0 not used by this
    split (left out). The group is the source video: the name without its
    trailing ``_<clip index>``.
    """
    suffix = f"_test_split{split}.txt"
    split_files = sorted(Path(splits_dir).glob(f"*{suffix}"))
    if not split_files:
        raise IngestError(f"no *{suffix} files in {splits_dir}: set --splits-dir "
                          "(datasets.hmdb51.splits_dir in config.yaml) to the folder unpacked from test_train_splits.rar")
    rows = []
    for label, split_file in enumerate(split_files):
        class_name = split_file.name[: -len(suffix)]
        for where, (video, use) in _lines(split_file, {2}, "<video>.avi <0|1|2>"):
            if use not in ("0", "1", "2"):
                raise IngestError(f"{where}: split code '{use}' is not 0, 1 or 2")
            if use != "0":
                stem = Path(video).stem
                split_name = "train" if use == "1" else "test"
                rows.append(_row(root, Path(class_name) / video, label, class_name, split_name,
                                 re.sub(r"_\d+$", "", stem)))
    return pd.DataFrame(rows, columns=LISTED)


def k400_entries(root, annotations, pattern=K400_PATTERN) -> pd.DataFrame:
    """Rows of Kinetics-400 from the official annotation CSVs.

    The validation set is the evaluation split (``test`` in the manifest); rows
    of the official test split are left out (their labels were withheld).
    ``pattern`` places a clip under ``root``; its fields are ``split`` (train or
    val), ``label``, ``label_underscored`` (spaces as ``_``), ``youtube_id``,
    ``time_start`` and ``time_end``.
    """
    needed = ["label", "youtube_id", "time_start", "time_end", "split"]
    if not annotations:
        raise IngestError("k400 needs --annotations: the official train and validate CSVs "
                          "(datasets.k400.annotations in config.yaml)")
    tables = []
    for csv in annotations:
        if not Path(csv).is_file():
            raise IngestError(f"annotation file {csv} not found: set --annotations (datasets.k400.annotations in config.yaml)")
        table = pd.read_csv(csv, dtype={"label": str, "youtube_id": str})
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise IngestError(f"{csv} lacks column(s) {absent}: expected the official Kinetics CSV header {needed}")
        unknown = set(table["split"]) - {"train", "val", "validate", "test"}
        if unknown:
            raise IngestError(f"{csv}: unknown split value(s) {sorted(unknown)}, expected train, val(idate) or test")
        tables.append(table[table["split"] != "test"])
    table = pd.concat(tables, ignore_index=True)
    if table.empty:
        raise IngestError(f"no train or validation rows in {annotations}: pass the train and validate CSVs with --annotations")
    classes = {name: i for i, name in enumerate(sorted(table["label"].unique()))}
    rows = []
    for clip in table.itertuples(index=False):
        train = clip.split == "train"
        rel = pattern.format(split="train" if train else "val", label=clip.label,
                             label_underscored=clip.label.replace(" ", "_"), youtube_id=clip.youtube_id,
                             time_start=int(clip.time_start), time_end=int(clip.time_end))
        rows.append(_row(root, rel, classes[clip.label], clip.label, "train" if train else "test", clip.youtube_id))
    return pd.DataFrame(rows, columns=LISTED)


def _probe(path):
    """(metadata, None) or (None, reason): one bad file must not stop the whole run."""
    try:
        return probe(path), None
    except VideoError as error:
        return None, " | ".join(error.reason.splitlines())


def build_manifest(entries: pd.DataFrame, videos_per_shard: int, workers: int = 1):
    """Probe the listed videos; return (manifest, missing paths, [(path, reason)] unreadable).

    Rows are sorted by split then video_id and cut into shards of
    ``videos_per_shard`` consecutive rows, so the same files give the same shards.
    """
    if videos_per_shard < 1:
        raise IngestError(f"--videos-per-shard must be at least 1, got {videos_per_shard}")
    duplicated = entries["video_id"][entries["video_id"].duplicated()]
    if len(duplicated):
        raise IngestError(f"video(s) listed twice in the split files, e.g. {duplicated.iloc[0]}")
    entries = entries.sort_values(["split", "video_id"], ignore_index=True)
    present = entries["path"].map(os.path.isfile)
    missing = entries.loc[~present, "path"].tolist()
    entries = entries[present].reset_index(drop=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # probing waits on I/O and OpenCV, not the GIL
        probed = list(pool.map(_probe, entries["path"]))
    readable = [meta is not None for meta, _ in probed]
    unreadable = [(path, reason) for path, (meta, reason) in zip(entries["path"], probed) if meta is None]
    metadata = pd.DataFrame([meta for meta, _ in probed if meta is not None], columns=COLUMNS[6:10])
    manifest = pd.concat([entries[readable].reset_index(drop=True), metadata], axis=1)
    manifest["shard"] = manifest.index // videos_per_shard
    return manifest[COLUMNS], missing, unreadable


def write_reports(out, missing, unreadable) -> None:
    """``<out>.missing.txt`` (one path a line) and ``<out>.unreadable.txt`` (path, tab, reason)."""
    write_text(f"{out}.missing.txt", "".join(f"{path}\n" for path in missing))
    write_text(f"{out}.unreadable.txt", "".join(f"{path}\t{reason}\n" for path, reason in unreadable))


def write_manifest(out, manifest) -> None:
    with atomic_path(out) as tmp:
        manifest.to_csv(tmp, index=False)


def add_listing_arguments(parser) -> None:
    """Where the videos and their split files are: shared with ``coclr split-table``."""
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--root", required=True, help="dataset root; manifest paths and video_ids are relative to it")
    parser.add_argument("--splits-dir", help="folder of the split files (UCF101, HMDB51, synthetic; default: --root)")
    parser.add_argument("--split", type=int, nargs="+", default=[1], choices=(1, 2, 3),
                        help="official split number(s) (default 1); the first says what is train and test here")
    parser.add_argument("--annotations", nargs="+", default=[], metavar="CSV", help="Kinetics CSVs (train, validate)")
    parser.add_argument("--k400-pattern", default=K400_PATTERN, help=f"clip path under --root (default {K400_PATTERN})")


def add_arguments(parser) -> None:
    add_listing_arguments(parser)
    parser.add_argument("--videos-per-shard", type=int, required=True)
    parser.add_argument("--out", required=True, help="manifest CSV; reports go to <out>.missing.txt / .unreadable.txt")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="probing threads")
    parser.add_argument("--strict", action="store_true", help="fail if any listed video is missing or unreadable")


def entries_for(args, split) -> pd.DataFrame:
    """The listed videos of ``args.format`` in official split ``split``, before probing."""
    if not Path(args.root).is_dir():
        raise IngestError(f"dataset root {args.root} is not a directory: set --root (datasets.{args.format}.root in config.yaml)")
    splits_dir = args.splits_dir or args.root
    if args.format == "hmdb51":
        return hmdb51_entries(args.root, splits_dir, split)
    if args.format == "k400":
        return k400_entries(args.root, args.annotations, args.k400_pattern)
    return ucf101_entries(args.root, splits_dir, split, name=args.format)


def listed_entries(args) -> pd.DataFrame:
    """Every video of the splits ``args.split``, once: the manifest the shards are cut from.

    Train and test are those of the first split (pretraining reads its training
    videos); videos only a later split lists (HMDB51 leaves some videos out of each
    split) are kept as ``unused``, so that each video is extracted once for all splits.
    ``coclr split-table`` then gives each split its own train/test table.
    """
    first, *later = (entries_for(args, split) for split in args.split)
    extra = pd.concat([first.iloc[:0], *later]).drop_duplicates("video_id")
    extra = extra[~extra["video_id"].isin(first["video_id"])].assign(split="unused")
    return pd.concat([first, extra], ignore_index=True)


def run(args) -> None:
    try:
        manifest, missing, unreadable = build_manifest(listed_entries(args), args.videos_per_shard, args.workers)
    except IngestError as error:
        raise SystemExit(f"ingest: {error}") from None
    write_reports(args.out, missing, unreadable)  # before any refusal: they say what to fix
    total = len(manifest) + len(missing) + len(unreadable)
    for bad, what, suffix in ((missing, "missing on disk", "missing"), (unreadable, "unreadable", "unreadable")):
        if bad:
            print(f"ingest: {len(bad)} of {total} listed videos {what}, see {args.out}.{suffix}.txt", file=sys.stderr)
    if args.strict and (missing or unreadable):
        raise SystemExit("ingest: --strict: every listed video must be present and readable (reports above)")
    if manifest.empty:
        raise SystemExit(f"ingest: none of the {total} listed videos is readable under {args.root}: check --root")
    write_manifest(args.out, manifest)
    counts = manifest["split"].value_counts()
    print(f"ingest: {len(manifest)} videos ({counts.get('train', 0)} train, {counts.get('test', 0)} test), "
          f"{manifest['label'].nunique()} classes, {manifest['shard'].max() + 1} shards -> {args.out}", file=sys.stderr)
