"""UCF101's split files: ``classInd.txt``, ``trainlist0N.txt`` and ``testlist0N.txt``.

The synthetic dataset (:mod:`coclr.synthetic`) is written in this exact layout, so it is read here too.
"""

import re
from pathlib import Path

import pandas as pd

from coclr.ingest import ENTRY, entry, lines_of, read_classes, reject, split_file


def entries(root, splits_dir, split=1, name="ucf101", rejected=None) -> pd.DataFrame:
    """Rows of UCF101 split ``split`` from classInd.txt, trainlist0N.txt and testlist0N.txt.

    Unusable lines go to ``rejected`` (see :func:`coclr.ingest.reject`); ``name`` is the dataset's name
    in config.yaml, for messages.
    """
    class_file = split_file(splits_dir, "classInd.txt", name)
    classes = read_classes(class_file, rejected)
    rows = []
    for split_name, list_name in (("train", "trainlist"), ("test", "testlist")):
        list_file = split_file(splits_dir, f"{list_name}0{split}.txt", name)
        for where, (rel, *given) in lines_of(list_file, {1, 2}, "<Class>/<video>.avi [<index>]", rejected):
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
            rows.append(entry(root, rel, label, class_name, split_name, f"{class_name}_g{source.group(1)}", where))
    return pd.DataFrame(rows, columns=ENTRY)
