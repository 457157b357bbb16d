"""The one exception a user can act on, raised anywhere below the entry points.

A :class:`CoclrError`'s message names the file, argument or config key at fault and the fix,
so a traceback adds nothing. Library code raises it (a notebook catches it like any other
exception) and never ends the process itself; each executable turns it into a clean exit in
one place: ``python -m coclr`` in :func:`coclr.cli.main`, ``python -m coclr.launch`` in its
``__main__`` block (tests/test_errors.py holds every other module to that). The more specific
errors derive from it: :class:`coclr.config.ConfigError`, :class:`coclr.ingest.IngestError`,
:class:`coclr.io.ShardError`, :class:`coclr.io.DiskFull`, :class:`coclr.training.trainer.Preempted`.
"""


class CoclrError(Exception):
    """A problem with the input, the configuration or the machine, explained by its message.

    At the entry point the message goes to stderr and the process exits with status 1. An error
    without a message (the command has already said why: the preflight's report, the trainer's
    line on preemption) exits with ``status`` and prints nothing more.
    """

    status = 1
