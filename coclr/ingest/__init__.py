"""``coclr ingest``: the manifest of one dataset, the single table every later stage reads.

The official split files say which videos exist, their class and their split;
the manifest adds each video's metadata (from :func:`coclr.video.probe`) and a
shard number, so frame extraction and flow can run as one Snakemake job per
shard. One row per video, columns ``COLUMNS``.

One module per input format, each with one function ``entries(root, ...)`` that
returns the listed videos as one table (columns ``ENTRY``, before probing):

- :mod:`coclr.ingest.ucf101`: UCF101's classInd.txt and train/test lists (also the
  synthetic dataset, which is written in UCF101's layout);
- :mod:`coclr.ingest.hmdb51`: HMDB51's ``<class>_test_splitN.txt`` files;
- :mod:`coclr.ingest.k400`: Kinetics-400's annotation CSVs;
- :mod:`coclr.ingest.folder`: a researcher's own videos, class folders or a CSV list.

:mod:`coclr.ingest.manifest` probes the listed videos into the manifest and writes
its reports; :mod:`coclr.ingest.command` is the command (arguments, the formats'
dispatch, the summary). This module holds what they all share: the table's columns,
the label of unlabelled videos, the error and the rejection of unusable lines.

Videos that are listed but absent on disk, or present but unreadable, are left
out of the manifest and written to ``<out>.missing.txt`` / ``<out>.unreadable.txt``;
lines of the lists that cannot be used (a label not in ``classInd.txt``, a class
folder that does not exist, a video listed twice, a malformed line) go to
``<out>.rejected.txt`` with the file and line at fault. All three are always
written (possibly empty) and summed up on stderr: downloads of Kinetics are
never complete, and a silent gap would bias every number after. ``--strict``
makes any of them fatal.

Without labels (folder format) every ``label`` is ``UNLABELLED`` (-1): such videos
pretrain (InfoNCE, CoCLR); the steps that need labels refuse them (:func:`require_labels`).
"""

import os
from pathlib import Path

import pandas as pd

from coclr.errors import CoclrError

LISTED = ["video_id", "path", "label", "class_name", "split", "group"]  # from the split files
COLUMNS = LISTED + ["num_frames", "fps", "width", "height", "shard"]
ENTRY = LISTED + ["where"]  # entries also say where they were listed (file and line), for messages
UNLABELLED = -1  # the label of a video without one (folder format)


class IngestError(CoclrError, ValueError):
    """A problem with the dataset's files or the arguments; the message says the fix."""


def reject(rejected, where, reason) -> None:
    """Record an unusable line or file in ``rejected``; with ``rejected=None`` (``--strict``) it is fatal."""
    if rejected is None:
        raise IngestError(f"{where}: {reason}")
    rejected.append((str(where), reason))


def lines_of(path, fields, expected, rejected=None, maxsplit=-1):
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


def split_file(splits_dir, filename, name):
    """``splits_dir/filename`` if it exists, else an error naming the setting to fix."""
    path = Path(splits_dir) / filename
    if not path.is_file():
        raise IngestError(f"{filename} not found in {splits_dir}: set --splits-dir "
                          f"(datasets.{name}.splits_dir in config.yaml) to the folder of the split files")
    return path


def entry(root, rel, label, class_name, split, group, where):
    rel = Path(rel)
    return dict(video_id=rel.with_suffix("").as_posix(), path=os.path.abspath(Path(root) / rel),
                label=label, class_name=class_name, split=split, group=group, where=where)


def read_classes(class_file, rejected=None) -> dict:
    """{class name: label} from a classInd.txt (``<index> <Class>`` per line, indices from 1).

    Names may contain spaces (the rest of the line is the name), as Kinetics' do.
    """
    classes = {}
    for where, (index, class_name) in lines_of(class_file, {2}, "<index> <Class>", rejected, maxsplit=1):
        if not index.isdigit() or int(index) < 1:
            reject(rejected, where, f"class index '{index}' is not a positive integer")
            continue
        classes[class_name.strip()] = int(index) - 1
    return classes


def require_labels(labels, source, step) -> None:
    """Refuse a step that needs labels (``step``) on unlabelled videos, naming the missing column."""
    if (pd.Series(labels) == UNLABELLED).any():
        raise CoclrError(f"{step} needs labelled videos, but {source} has unlabelled ones (label {UNLABELLED}): "
                         "give the dataset class folders or a `label` column in its CSV; unlabelled videos "
                         "serve InfoNCE and CoCLR pretraining and `coclr embed`")
