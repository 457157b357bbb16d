"""HMDB51's split files: one ``<class>_test_splitN.txt`` per class and split."""

import re
from pathlib import Path

import pandas as pd

from coclr.ingest import ENTRY, IngestError, entry, lines_of, reject


def entries(root, splits_dir, split=1, rejected=None) -> pd.DataFrame:
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
        for where, (video, use) in lines_of(split_file, {2}, "<video>.avi <0|1|2>", rejected):
            if use not in ("0", "1", "2"):
                reject(rejected, where, f"split code '{use}' is not 0, 1 or 2")
                continue
            if use != "0":
                stem = Path(video).stem
                split_name = "train" if use == "1" else "test"
                rows.append(entry(root, Path(class_name) / video, label, class_name, split_name,
                                 re.sub(r"_\d+$", "", stem), where))
    return pd.DataFrame(rows, columns=ENTRY)
