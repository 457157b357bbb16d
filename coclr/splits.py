"""``python -m coclr split-table``: one official split of a dataset, over the shards already cut.

The manifest (``coclr ingest``) lists every video of the configured splits once,
and the frame and flow shards are cut from it, so they do not depend on the split.
A split table is the manifest's rows of one split with that split's train/test
roles: the same columns, so every evaluation entry point takes it as ``--manifest``.
Listed videos that the manifest lacks (missing or unreadable, reported by ingest)
are left out and counted.
"""

import logging

import pandas as pd

from coclr.errors import CoclrError
from coclr.ingest import COLUMNS, LISTED, IngestError
from coclr.ingest.command import add_listing_arguments, entries_for
from coclr.ingest.manifest import write_manifest

log = logging.getLogger(__name__)

STORED = ["video_id", *COLUMNS[len(LISTED):]]  # what the manifest knows that the split files do not


def add_arguments(parser) -> None:
    add_listing_arguments(parser)
    parser.add_argument("--manifest", required=True, help="the dataset's manifest (coclr ingest): metadata and shards")
    parser.add_argument("--out", required=True, help="split table CSV (the manifest's columns)")


def split_table(entries: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``entries`` (one split's listing) that the manifest holds, with its metadata and shard."""
    table = entries.merge(manifest[STORED], on="video_id", how="inner")
    return table.sort_values(["split", "video_id"], ignore_index=True)[COLUMNS]


def run(args) -> None:
    if len(args.split) != 1:
        raise CoclrError(f"split-table: one table per call, got --split {' '.join(map(str, args.split))}")
    split = args.split[0]
    try:
        entries = entries_for(args, split)
    except IngestError as error:
        raise IngestError(f"split-table: {error}") from None
    table = split_table(entries, pd.read_csv(args.manifest))
    for role in ("train", "test"):
        if not (table["split"] == role).any():
            raise CoclrError(f"split-table: split {split} has no {role} video in {args.manifest}: was it ingested "
                             f"with --split {split}? (datasets.<name>.splits in config.yaml)")
    left_out = len(entries) - len(table)
    if left_out:
        log.warning(f"split-table: {left_out} of {len(entries)} videos of split {split} are not in {args.manifest} "
                    "(missing or unreadable: see the ingest reports)")
    write_manifest(args.out, table)
    counts = table["split"].value_counts()
    log.info(f"split-table: split {split}, {counts['train']} train and {counts['test']} test videos -> {args.out}")
