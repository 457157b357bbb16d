"""GPUs handed out on one machine: each job takes devices of its own.

Snakemake does not tell a job which GPUs to use, so without this every job of the local
profile would use ``cuda:0``. :func:`acquire` takes ``n`` devices by holding an exclusive
``flock`` on one file per device (``<lock_dir>/gpu<i>.lock``) and returns their ids for
``CUDA_VISIBLE_DEVICES``. The kernel drops a ``flock`` when its holder exits, however it
exits, so a killed job never leaves a device taken.

The devices counted are, in this order: ``COCLR_GPU_COUNT`` (a number, to fake a machine's
GPUs in tests), the ids of a ``CUDA_VISIBLE_DEVICES`` already set (a share given from
outside), else the GPUs ``nvidia-smi -L`` lists. ``COCLR_GPU_LOCK_DIR`` moves the lock
files (default ``<tmp>/coclr-gpus-<uid>``; jobs share devices only through one folder).
Under SLURM a job's ``CUDA_VISIBLE_DEVICES`` comes from the scheduler and is used as is.
"""

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from coclr.errors import CoclrError

log = logging.getLogger(__name__)

POLL_S = 1.0


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"coclr-gpus-{os.getuid()}"
    return Path(os.environ.get("COCLR_GPU_LOCK_DIR") or default)


def visible_devices() -> list:
    """The device ids this machine offers to jobs (see the module's docstring)."""
    fake = os.environ.get("COCLR_GPU_COUNT")
    if fake not in (None, ""):
        try:
            return [str(i) for i in range(int(fake))]
        except ValueError:
            raise CoclrError(f"COCLR_GPU_COUNT={fake!r} is not a number of GPUs (unset it, or set e.g. 4)") from None
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d for d in given.split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


class Devices:
    """Devices held by this process: ``ids`` for CUDA_VISIBLE_DEVICES; :meth:`release` (or exit) frees them."""

    def __init__(self, ids, handles):
        self.ids, self._handles = ids, handles

    @property
    def env_value(self) -> str:
        return ",".join(self.ids)

    def release(self) -> None:
        for handle in self._handles:
            handle.close()  # closing the file drops its flock
        self._handles = []


def _try_lock(path: Path):
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def acquire(n: int, devices=None, folder=None, timeout_s=None) -> Devices:
    """Take ``n`` free devices of ``devices`` (default :func:`visible_devices`), waiting while fewer
    are free. Fails at once when the machine has fewer than ``n``."""
    devices = visible_devices() if devices is None else list(devices)
    if n > len(devices):
        raise CoclrError(f"a job asks for {n} GPU(s) but this machine offers {len(devices)} "
                         f"({'COCLR_GPU_COUNT' if os.environ.get('COCLR_GPU_COUNT') else 'nvidia-smi -L'}): "
                         "lower resources.gpus, or set flow.device: cpu")
    folder = Path(folder) if folder is not None else lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    start, told = time.monotonic(), False
    while True:
        held = []
        for device in devices:
            handle = _try_lock(folder / f"gpu{device}.lock")
            if handle is not None:
                held.append((device, handle))
                if len(held) == n:
                    return Devices([d for d, _ in held], [h for _, h in held])
        for _, handle in held:  # not enough: give back what was taken, so two jobs cannot deadlock
            handle.close()
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no {n} free GPU(s) of {len(devices)} within {timeout_s} s (locks in {folder})")
        if not told:
            log.info(f"waiting for {n} free GPU(s) of {len(devices)} (held by other jobs; locks in {folder})")
            told = True
        time.sleep(POLL_S)
