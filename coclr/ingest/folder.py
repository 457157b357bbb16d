"""The folder format: a researcher's own videos, in class folders or listed in a CSV.

Class folders (``<root>/<class>/<video>``) or a CSV with a ``path`` column and optional
``label``, ``split`` and ``group`` columns; without labels every video is ``UNLABELLED``.
Where no split is given a group is held out for testing by a hash of its name (:func:`held_out`).
"""

import csv
import hashlib
import os
from pathlib import Path

import pandas as pd

from coclr.ingest import ENTRY, UNLABELLED, IngestError, read_classes, reject

# Containers the folder layout picks up (any that ffmpeg reads can be listed in a CSV).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
                  ".ogv", ".ts", ".mts")
CSV_COLUMNS = ("path", "label", "split", "group")


def entries(root, test_fraction, class_file=None, rejected=None) -> pd.DataFrame:
    """The folder format's entries: a class-folder tree or a CSV list, whichever ``root`` is."""
    if test_fraction is None or not 0 <= test_fraction < 1:
        raise IngestError(f"the folder format needs --test-fraction in [0, 1) (ingest.test_fraction in config.yaml), "
                          f"got {test_fraction}")
    if class_file and not Path(class_file).is_file():
        raise IngestError(f"classes file {class_file} not found: fix --classes (datasets.<name>.classes in config.yaml)")
    source = Path(root)
    if source.is_dir():
        return tree_entries(source, test_fraction, class_file, rejected)
    if source.is_file() and source.suffix.lower() == ".csv":
        return csv_entries(source, test_fraction, class_file, rejected)
    raise IngestError(f"dataset root {root} is neither a folder nor a .csv file: set --root "
                      "(datasets.<name>.root in config.yaml) to the folder of class folders or to the CSV list")


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


def tree_entries(root, test_fraction, class_file=None, rejected=None) -> pd.DataFrame:
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
