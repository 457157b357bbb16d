"""Kinetics-400's annotation CSVs (train, validate) and where the common downloaders put a clip."""

from pathlib import Path

import pandas as pd

from coclr.ingest import ENTRY, IngestError, entry

# Where the common Kinetics downloaders put a clip; {split} is "train" or "val".
K400_PATTERN = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


def entries(root, annotations, pattern=K400_PATTERN) -> pd.DataFrame:
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
        rows.append(entry(root, rel, classes[clip.label], clip.label, "train" if train else "test", clip.youtube_id,
                         f"{clip.source} line {clip.line}"))
    return pd.DataFrame(rows, columns=ENTRY)
