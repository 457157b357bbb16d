"""Atomic file output: a job that dies leaves nothing that looks complete.

Every writer in the project goes through :func:`atomic_path`: it hands out a
temporary name next to the target and renames it over the target only when
the block finishes without an exception.
"""

import contextlib
import hashlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target, suffix=None):
    """Yield a temporary path beside ``target``; rename it to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256(path, chunk=1 << 20) -> str:
    """Content hash, recorded in results so a number can be traced to its checkpoint."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path) -> dict:
    """Path and content hash: every number can be traced to the file it came from."""
    return {"path": str(path), "sha256": sha256(path)}
