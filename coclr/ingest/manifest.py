"""The listed videos probed into the manifest, cut into shards, and the report files beside it."""

import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from coclr.ingest import COLUMNS, IngestError, reject
from coclr.io import atomic_path, write_text
from coclr.video import VideoError, probe


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
