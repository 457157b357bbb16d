"""Manifest of one dataset: the single table every later stage reads.

The official split files say which videos exist, their class and their split;
the manifest adds each video's metadata (from :func:`coclr.video.probe`) and a
shard number, so frame extraction and flow can run as one Snakemake job per
shard. One row per video, columns ``COLUMNS``.

Videos that are listed but absent on disk, or present but unreadable, are left
out of the manifest and written to ``<out>.missing.txt`` / ``<out>.unreadable.txt``;
lines of the lists that cannot be used (a label not in ``classInd.txt``, a class
folder that does not exist, a video listed twice, a malformed line) go to
``<out>.rejected.txt`` with the file and line at fault. All three are always
written (possibly empty) and summed up on stderr: downloads of Kinetics are
never complete, and a silent gap would bias every number after. ``--strict``
makes any of them fatal.

The ``folder`` format takes a researcher's own videos (:func:`folder_entries`,
:func:`csv_entries`). Without labels every ``label`` is ``UNLABELLED`` (-1):
such videos pretrain (InfoNCE, CoCLR); the steps that need labels refuse them
(:func:`require_labels`).
"""

import csv
import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from coclr.errors import CoclrError
from coclr.io import atomic_path, write_text
from coclr.video import VideoError, probe

log = logging.getLogger(__name__)

LISTED = ["video_id", "path", "label", "class_name", "split", "group"]  # from the split files
COLUMNS = LISTED + ["num_frames", "fps", "width", "height", "shard"]
ENTRY = LISTED + ["where"]  # entries also say where they were listed (file and line), for messages
FORMATS = ("ucf101", "hmdb51", "k400", "synthetic", "folder")
UNLABELLED = -1  # the label of a video without one (folder format)
# Containers the folder layout picks up (any that ffmpeg reads can be listed in a CSV).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
                  ".ogv", ".ts", ".mts")
CSV_COLUMNS = ("path", "label", "split", "group")
# Where the common Kinetics downloaders put a clip; {split} is "train" or "val".
K400_PATTERN = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


class IngestError(CoclrError, ValueError):
    """A problem with the dataset's files or the arguments; the message says the fix."""


def reject(rejected, where, reason) -> None:
    """Record an unusable line or file in ``rejected``; with ``rejected=None`` (``--strict``) it is fatal."""
    if rejected is None:
        raise IngestError(f"{where}: {reason}")
    rejected.append((str(where), reason))


def _lines(path, fields, expected, rejected=None, maxsplit=-1):
    """(where, words) of each non-blank line that has ``fields`` words; others are rejected.

    CRLF endings and trailing blanks, as in the official files, are tolerated.
    """
    text = Path(path).read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split(maxsplit=maxsplit)
        if words:
            where = f"{path} line {n}"
            if len(words) not in fields:
                reject(rejected, where, f"expected '{expected}', got '{line.strip()}'")
                continue
            yield where, words


def _require(splits_dir, filename, name):
    """``splits_dir/filename`` if it exists, else an error naming the setting to fix."""
    path = Path(splits_dir) / filename
    if not path.is_file():
        raise IngestError(f"{filename} not found in {splits_dir}: set --splits-dir "
                          f"(datasets.{name}.splits_dir in config.yaml) to the folder of the split files")
    return path


def _row(root, rel, label, class_name, split, group, where):
    rel = Path(rel)
    return dict(video_id=rel.with_suffix("").as_posix(), path=os.path.abspath(Path(root) / rel),
                label=label, class_name=class_name, split=split, group=group, where=where)


def read_classes(class_file, rejected=None) -> dict:
    """{class name: label} from a classInd.txt (``<index> <Class>`` per line, indices from 1).

    Names may contain spaces (the rest of the line is the name), as Kinetics' do.
    """
    classes = {}
    for where, (index, class_name) in _lines(class_file, {2}, "<index> <Class>", rejected, maxsplit=1):
        if not index.isdigit() or int(index) < 1:
            reject(rejected, where, f"class index '{index}' is not a positive integer")
            continue
        classes[class_name.strip()] = int(index) - 1
    return classes


def ucf101_entries(root, splits_dir, split=1, name="ucf101", rejected=None) -> pd.DataFrame:
    """Rows of UCF101 split ``split`` from classInd.txt, trainlist0N.txt and testlist0N.txt.

    The synthetic dataset is written in this exact layout, so it comes here too.
    Unusable lines go to ``rejected`` (see :func:`reject`).
    """
    class_file = _require(splits_dir, "classInd.txt", name)
    classes = read_classes(class_file, rejected)
    rows = []
    for split_name, list_name in (("train", "trainlist"), ("test", "testlist")):
        list_file = _require(splits_dir, f"{list_name}0{split}.txt", name)
        for where, (rel, *given) in _lines(list_file, {1, 2}, "<Class>/<video>.avi [<index>]", rejected):
            class_name = rel.split("/")[0]
            if class_name not in classes:
                reject(rejected, where, f"class folder '{class_name}' is not in {class_file}")
                continue
            if not (Path(root) / class_name).is_dir():
                reject(rejected, where, f"class folder '{class_name}' does not exist under {root}")
                continue
            label = classes[class_name]
            if given and (not given[0].isdigit() or int(given[0]) != label + 1):
                reject(rejected, where, f"label {given[0]} disagrees with {class_file} ({class_name} = {label + 1})")
                continue
            source = re.search(r"_g(\d+)_c\d+$", Path(rel).stem)
            if not source:
                reject(rejected, where, f"'{rel}' does not follow UCF101's v_<Class>_gNN_cNN naming")
                continue
            rows.append(_row(root, rel, label, class_name, split_name, f"{class_name}_g{source.group(1)}", where))
    return pd.DataFrame(rows, columns=ENTRY)


def hmdb51_entries(root, splits_dir, split=1, rejected=None) -> pd.DataFrame:
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
        if not (Path(root) / class_name).is_dir():
            reject(rejected, split_file, f"class folder '{class_name}' does not exist under {root}")
            continue
        for where, (video, use) in _lines(split_file, {2}, "<video>.avi <0|1|2>", rejected):
            if use not in ("0", "1", "2"):
                reject(rejected, where, f"split code '{use}' is not 0, 1 or 2")
                continue
            if use != "0":
                stem = Path(video).stem
                split_name = "train" if use == "1" else "test"
                rows.append(_row(root, Path(class_name) / video, label, class_name, split_name,
                                 re.sub(r"_\d+$", "", stem), where))
    return pd.DataFrame(rows, columns=ENTRY)


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
    for csv_file in annotations:
        if not Path(csv_file).is_file():
            raise IngestError(f"annotation file {csv_file} not found: set --annotations (datasets.k400.annotations in config.yaml)")
        table = pd.read_csv(csv_file, dtype={"label": str, "youtube_id": str})
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise IngestError(f"{csv_file} lacks column(s) {absent}: expected the official Kinetics CSV header {needed}")
        unknown = set(table["split"]) - {"train", "val", "validate", "test"}
        if unknown:
            raise IngestError(f"{csv_file}: unknown split value(s) {sorted(unknown)}, expected train, val(idate) or test")
        table["source"], table["line"] = str(csv_file), table.index + 2  # header is line 1
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
        rows.append(_row(root, rel, classes[clip.label], clip.label, "train" if train else "test", clip.youtube_id,
                         f"{clip.source} line {clip.line}"))
    return pd.DataFrame(rows, columns=ENTRY)


# -- the folder format: a researcher's own videos ------------------------------------------

def held_out(group: str, test_fraction: float) -> bool:
    """Whether a group is in the test split when no split is given: a hash, not a draw.

    Deterministic and per group: the same group always lands on the same side,
    clips of one source never straddle the split, and adding videos later moves
    no earlier video across it. (Not stratified by class: give a ``split``
    column when every class must appear on both sides.)
    """
    digest = int(hashlib.sha1(group.encode("utf-8")).hexdigest()[:8], 16)
    return digest < test_fraction * 2**32


def _video_id(path: Path, root: Path) -> str:
    """The path below ``root`` without its suffix; a path outside ``root`` keeps its absolute form."""
    rel = os.path.relpath(path, root)
    inside = not rel.startswith("..")
    return Path(rel if inside else os.path.abspath(path).lstrip("/")).with_suffix("").as_posix()


def _label(class_name, classes, class_file, where, rejected):
    """The label of ``class_name``; None (and a rejection) when ``classes`` lacks it."""
    if class_name not in classes:
        reject(rejected, where, f"label '{class_name}' is not in {class_file}: add it there or fix the label")
        return None
    return classes[class_name]


def folder_entries(root, test_fraction, class_file=None, rejected=None) -> pd.DataFrame:
    """``<root>/<class>/<video>`` (any depth below the class folder), or unlabelled videos right in ``root``.

    The label is the class folder, numbered as in ``class_file`` (classInd.txt
    format) when given, else in sorted order. The group is the video itself and
    the split is :func:`held_out`; unlabelled videos are all ``train``: with
    nothing to evaluate, every video pretrains. Files with other suffixes than
    ``VIDEO_SUFFIXES`` are rejected (list them in a CSV to take them anyway),
    except .txt and .csv (notes, classInd.txt).
    """
    root = Path(root)
    files = sorted(f for f in root.rglob("*") if f.is_file() and not any(
        part.startswith(".") for part in f.relative_to(root).parts))  # hidden files (.DS_Store) are not videos
    videos = []
    for f in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(f)
        elif f.suffix.lower() not in (".txt", ".csv"):
            reject(rejected, f, f"suffix '{f.suffix}' is not a known video container ({' '.join(VIDEO_SUFFIXES)}); "
                                "list it in a CSV to ingest it anyway")
    loose = [f for f in videos if f.parent == root]
    if loose and len(loose) < len(videos):
        raise IngestError(f"{root} holds videos both in class folders (e.g. {next(f for f in videos if f.parent != root)}) "
                          f"and directly under it (e.g. {loose[0]}): put every video in a class folder, or none")
    labelled = not loose
    names = sorted({f.relative_to(root).parts[0] for f in videos}) if labelled else []
    classes = read_classes(class_file, rejected) if class_file else {name: i for i, name in enumerate(names)}
    rows = []
    for f in videos:
        class_name = f.relative_to(root).parts[0] if labelled else ""
        label = _label(class_name, classes, class_file, f, rejected) if labelled else UNLABELLED
        if label is None:
            continue
        video_id = _video_id(f, root)
        split = "test" if labelled and held_out(video_id, test_fraction) else "train"
        rows.append(dict(video_id=video_id, path=str(f.absolute()), label=label, class_name=class_name,
                         split=split, group=video_id, where=str(f)))
    return pd.DataFrame(rows, columns=ENTRY)


def csv_paths(csv_file) -> tuple:
    """(header, [(where, row)]) of a video list, each ``path`` resolved against the CSV's folder.

    Fatal when there is no ``path`` column; rows are dicts of the columns
    present, None for a row with more cells than the header.
    """
    csv_file = Path(csv_file)
    with open(csv_file, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets write a BOM
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "path" not in header:
            raise IngestError(f"{csv_file} line 1: no `path` column (header: {','.join(header) or 'empty'}); "
                              f"the first line must name the columns: path, and optionally label, split, group")
        rows = []
        for row in reader:
            where = f"{csv_file} line {reader.line_num}"
            if None in row:
                rows.append((where, None))  # more cells than the header names
                continue
            row = {key: (value or "").strip() for key, value in row.items()}
            if row["path"]:
                path = Path(row["path"])
                row["path"] = str(path if path.is_absolute() else (csv_file.parent / path).absolute())
            rows.append((where, row))
    return header, rows


def csv_entries(csv_file, test_fraction, class_file=None, rejected=None) -> pd.DataFrame:
    """Rows of a video list: a CSV with a ``path`` column and optional ``label``, ``split``, ``group``.

    Relative paths are relative to the CSV's folder. Without ``label`` every
    video is unlabelled; with it, labels are numbered as in ``class_file`` when
    given, else in sorted order. An empty ``split`` is :func:`held_out` (``train``
    for unlabelled videos: every one pretrains); an empty ``group`` is the video itself.
    """
    header, rows = csv_paths(csv_file)
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise IngestError(f"{csv_file} line 1: unknown column(s) {unknown}; known: {', '.join(CSV_COLUMNS)}")
    root = Path(csv_file).parent
    usable = []
    for where, row in rows:
        if row is None:
            reject(rejected, where, f"more cells than the header's {len(header)} ({','.join(header)}): quote paths with commas")
        elif not row["path"]:
            reject(rejected, where, "empty `path`")
        elif "label" in header and not row["label"]:
            reject(rejected, where, "empty `label`: every row of a CSV with a label column needs one")
        elif row.get("split", "") not in ("", "train", "test"):
            reject(rejected, where, f"split '{row['split']}' is not train or test (or empty: held out by hash)")
        else:
            usable.append((where, row))
    labelled = "label" in header
    names = sorted({row["label"] for _, row in usable}) if labelled else []
    classes = read_classes(class_file, rejected) if class_file else {name: i for i, name in enumerate(names)}
    entries = []
    for where, row in usable:
        label = _label(row["label"], classes, class_file, where, rejected) if labelled else UNLABELLED
        if label is None:
            continue
        video_id = _video_id(Path(row["path"]), root)
        group = row.get("group") or video_id
        split = row.get("split") or ("test" if labelled and held_out(group, test_fraction) else "train")
        entries.append(dict(video_id=video_id, path=row["path"], label=label, class_name=row.get("label", ""),
                            split=split, group=group, where=where))
    return pd.DataFrame(entries, columns=ENTRY)


def has_labels(root) -> bool:
    """Whether a folder-format source carries labels (class folders, or a CSV ``label`` column), without probing."""
    root = Path(root)
    if root.is_file():
        with open(root, newline="", encoding="utf-8-sig") as f:
            return "label" in next(csv.reader(f), [])
    return any(f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
               for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") for f in d.rglob("*"))


def require_labels(labels, source, step) -> None:
    """Refuse a step that needs labels (``step``) on unlabelled videos, naming the missing column."""
    if (pd.Series(labels) == UNLABELLED).any():
        raise CoclrError(f"{step} needs labelled videos, but {source} has unlabelled ones (label {UNLABELLED}): "
                         "give the dataset class folders or a `label` column in its CSV; unlabelled videos "
                         "serve InfoNCE and CoCLR pretraining and `coclr embed`")


def _probe(path):
    """(metadata, None) or (None, reason): one bad file must not stop the whole run."""
    try:
        return probe(path), None
    except VideoError as error:
        return None, " | ".join(error.reason.splitlines())


def drop_duplicates(entries: pd.DataFrame, rejected=None) -> pd.DataFrame:
    """Entries with each video id once: a later listing of an id is rejected, naming both places."""
    first = {}
    keep = []
    for video_id, where in zip(entries["video_id"], entries["where"]):
        if video_id in first:
            reject(rejected, where, f"video id '{video_id}' is already listed at {first[video_id]} "
                                    "(ids are paths without their suffix): remove or rename one")
        else:
            first[video_id] = where
        keep.append(first[video_id] == where)
    return entries[keep]


def build_manifest(entries: pd.DataFrame, videos_per_shard: int, workers: int = 1, rejected=None):
    """Probe the listed videos; return (manifest, missing paths, [(path, reason)] unreadable).

    A video id listed twice is rejected (see :func:`drop_duplicates`). Rows are
    sorted by split then video_id and cut into shards of ``videos_per_shard``
    consecutive rows, so the same files give the same shards.
    """
    if videos_per_shard < 1:
        raise IngestError(f"--videos-per-shard must be at least 1, got {videos_per_shard}")
    entries = drop_duplicates(entries, rejected)
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


def write_reports(out, missing, unreadable, rejected=()) -> None:
    """``<out>.missing.txt`` (one path a line), ``<out>.unreadable.txt`` (path, tab, reason) and
    ``<out>.rejected.txt`` (file and line, tab, reason)."""
    write_text(f"{out}.missing.txt", "".join(f"{path}\n" for path in missing))
    write_text(f"{out}.unreadable.txt", "".join(f"{path}\t{reason}\n" for path, reason in unreadable))
    write_text(f"{out}.rejected.txt", "".join(f"{where}\t{reason}\n" for where, reason in rejected))


def short_videos(manifest, clip_frames, fps=None) -> int:
    """Videos with fewer frames than one clip spans (at the extracted rate ``fps``, native when None)."""
    frames = manifest["num_frames"] * (fps / manifest["fps"] if fps else 1)
    return int((frames < clip_frames).sum())


def write_manifest(out, manifest) -> None:
    with atomic_path(out) as tmp:
        manifest.to_csv(tmp, index=False)


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
        return folder_source_entries(args, rejected)
    if not Path(args.root).is_dir():
        raise IngestError(f"dataset root {args.root} is not a directory: set --root (datasets.{args.format}.root in config.yaml)")
    splits_dir = args.splits_dir or args.root
    if args.format == "hmdb51":
        return hmdb51_entries(args.root, splits_dir, split, rejected)
    if args.format == "k400":
        return k400_entries(args.root, args.annotations, args.k400_pattern)
    return ucf101_entries(args.root, splits_dir, split, name=args.format, rejected=rejected)


def folder_source_entries(args, rejected=None) -> pd.DataFrame:
    """The folder format's entries: a class-folder tree or a CSV list, whichever ``--root`` is."""
    if args.test_fraction is None or not 0 <= args.test_fraction < 1:
        raise IngestError(f"the folder format needs --test-fraction in [0, 1) (ingest.test_fraction in config.yaml), "
                          f"got {args.test_fraction}")
    if args.classes and not Path(args.classes).is_file():
        raise IngestError(f"classes file {args.classes} not found: fix --classes (datasets.<name>.classes in config.yaml)")
    root = Path(args.root)
    if root.is_dir():
        return folder_entries(root, args.test_fraction, args.classes, rejected)
    if root.is_file() and root.suffix.lower() == ".csv":
        return csv_entries(root, args.test_fraction, args.classes, rejected)
    raise IngestError(f"dataset root {args.root} is neither a folder nor a .csv file: set --root "
                      "(datasets.<name>.root in config.yaml) to the folder of class folders or to the CSV list")


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
