"""Logging: every module logs to ``logging.getLogger(__name__)``; the entry point configures it, once.

:func:`configure` (called by :func:`coclr.cli.main` and ``python -m coclr.launch``) gives the
package's logger one handler on stderr: each line starts with a time stamp and, under torchrun
(``WORLD_SIZE`` > 1), the process's rank (``RANK``). Rank 0, or the only process, logs progress
(INFO); the other ranks log warnings and errors only, so an N-process job's log reads like a
one-process job's. Library code used without an entry point (a notebook) logs nothing unless its
caller configures logging, as any library.

What a command produces on stdout (the preflight's report, the importer's report, a flow job's JSON
summary, the benchmarks' tables) stays ``print``, and so does the cost line every job ends with
(:data:`coclr.cli.COST_LINE`, read back by ``benchmarks/stages.py``); tqdm bars draw on stderr as
before, on terminals only.
"""

import logging
import os
import sys

PACKAGE = "coclr"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a line comes, not as it was when the handler
    was made (a test's captured stream, a job's redirected one)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def rank(environ=None):
    """This process's rank under torchrun (``RANK`` when ``WORLD_SIZE`` > 1), None in a single process."""
    environ = os.environ if environ is None else environ
    if int(environ.get("WORLD_SIZE", "1")) > 1:
        return int(environ.get("RANK", "0"))
    return None


def configure(environ=None) -> logging.Logger:
    """Set up the package's logger for this process (again: the previous handler is replaced)."""
    this = rank(environ)
    logger = logging.getLogger(PACKAGE)
    for handler in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(handler)
    handler = StderrHandler()
    where = "" if this is None else f"[rank {this}] "
    handler.setFormatter(logging.Formatter(f"%(asctime)s {where}%(message)s", DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if this in (None, 0) else logging.WARNING)
    return logger


def above_bars():
    """A context in which the package's log lines are written above a tqdm bar (``tqdm.write``), not through it."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm([logging.getLogger(PACKAGE)])
