"""Atomic file output: a job that dies leaves nothing that looks complete.

Every writer in the project goes through :func:`atomic_path`: it hands out a
temporary name next to the target and renames it over the target only when
the block finishes without an exception.
"""

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from coclr.errors import CoclrError

log = logging.getLogger(__name__)


class ShardError(CoclrError):
    """A frame/flow shard that cannot be read: corrupt, truncated or not a shard (:mod:`coclr.shards`).
    One string argument, so a DataLoader worker re-raises it in the main process with the message intact."""


class DiskFull(OSError, CoclrError):
    """No space left while writing an output: names the file and the space it needs."""


def out_of_space(error: BaseException) -> bool:
    """ENOSPC/EDQUOT, also as h5py and torch report it (an OSError or RuntimeError with the text only)."""
    text = str(error)
    return (getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "No space left on device" in text or "Disk quota exceeded" in text)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def disk_full_error(target: Path, tmp: Path, error) -> DiskFull:
    """A :class:`DiskFull` for ``target``: free space now, and at least what was written before the
    disk filled (or the size of the version it would replace, if larger)."""
    written = tmp.stat().st_size if tmp.exists() else 0
    needed = max(written, target.stat().st_size if target.exists() else 0)
    free = shutil.disk_usage(target.parent).free
    return DiskFull(errno.ENOSPC, f"no space left on device writing {target}: {human(free)} free in {target.parent}, "
                    f"it needs at least {human(needed)} (free that much and rerun the job; "
                    f"the previous {target.name}, if any, is intact)")


@contextlib.contextmanager
def atomic_path(target, suffix=None):
    """Yield a temporary path beside ``target``; rename it to ``target`` on success.

    A full disk raises :class:`DiskFull` naming ``target`` and the space needed; ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except (OSError, RuntimeError) as error:
        if out_of_space(error) and not isinstance(error, DiskFull):
            raise disk_full_error(target, tmp, error) from error
        raise
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class OwnerLock:
    """A lock file holding its owner's pid and host, refreshed every ``REFRESH_S`` by a thread.

    Refused while its owner lives. Taken over, with a message, when the owner is a dead pid of this
    host, or when a lock of another host has not been refreshed for ``STALE_S`` (its node is gone:
    a requeued job lands elsewhere). The owning process may take it again (one stage, several trainers).
    """

    REFRESH_S, STALE_S = 30, 300

    def __init__(self, path, what):
        self.path, self.what = Path(path), what
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        self._acquire()
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def _acquire(self) -> None:
        mine = json.dumps({"pid": self.pid, "host": self.host, "since": time.time()})
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_or_refuse()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            return

    def _take_over_or_refuse(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (FileNotFoundError, ValueError):  # released meanwhile, or being written
            time.sleep(0.1)
            return
        pid, host = owner.get("pid"), owner.get("host")
        same_host = host == self.host
        if same_host and pid == self.pid:
            pass
        elif same_host and not pid_alive(pid):
            log.warning(f"{self.path}: its owner, pid {pid} on {host}, is dead: taking the lock over")
        elif not same_host and age > self.STALE_S:
            log.warning(f"{self.path}: its owner, pid {pid} on {host}, has not refreshed it for {age:.0f} s: "
                        "taking the lock over")
        else:
            raise CoclrError(f"{self.path} is held by pid {pid} on {host}, {self.what} already running: "
                             f"stop that one first (if it is dead on another host, delete {self.path})")
        self.path.unlink(missing_ok=True)

    def _refresh(self) -> None:
        while not self._stop.wait(self.REFRESH_S):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("pid") == self.pid:
                self.path.unlink()
        except (FileNotFoundError, ValueError):
            pass
