"""``python -m coclr <command>``: one thin entry point per pipeline stage.

Each command lives in its own module, which provides ``add_arguments(parser)``
and ``run(args)``. Modules are imported only when their command runs, so a
cheap command (``ingest``) does not pay for importing torch.
Every command ends its log with its wall time and peak memory (``COST_LINE``),
so a run's stage costs can be read off its job logs. Every command dies with the
process that started it (``prctl(PR_SET_PDEATHSIG)``, :func:`coclr.launch.die_with_parent`):
a job whose shell is killed leaves no orphan behind (a trainer, which saves on
SIGTERM, asks for SIGTERM instead of SIGKILL while it trains).
:func:`main` configures logging for the command (:mod:`coclr.logs`), and it is the one
place where a command ends the process on a :class:`coclr.errors.CoclrError`: its message on
stderr, exit status 1 (or, without a message, the error's own status), no traceback.
"""

import argparse
import importlib
import resource
import signal
import sys
import time

from coclr import logs
from coclr.errors import CoclrError
from coclr.io import DiskFull, ShardError
from coclr.launch import die_with_parent

COMMANDS = {
    "check": ("coclr.check", "preflight: what a configuration will cost, and what cannot work"),
    "synthesize": ("coclr.synthetic", "generate the embedded synthetic dataset (AVI files, UCF101 layout)"),
    "ingest": ("coclr.ingest.command", "build the manifest of a dataset from its official split files"),
    "split-table": ("coclr.splits", "one official split's train/test table over the ingested videos"),
    "frames": ("coclr.frames", "decode videos into JPEG frames stored in HDF5 shards"),
    "flow": ("coclr.flow.extract", "estimate TV-L1 optical flow for one frame shard"),
    "pretrain": ("coclr.training.pretrain", "InfoNCE or UberNCE pretraining of one view"),
    "cotrain": ("coclr.training.cotrain", "one CoCLR stage: train one view with positives mined by the other"),
    "import-weights": ("coclr.importer", "convert a checkpoint in the authors' layout"),
    "features": ("coclr.evaluation.features", "extract per-video backbone features"),
    "embed": ("coclr.embed", "features of any videos (folder, CSV or files) from a checkpoint, to Parquet or NPZ"),
    "linear-probe": ("coclr.evaluation.linear_probe", "linear classification on frozen features"),
    "retrieval": ("coclr.evaluation.retrieval", "nearest-neighbour video retrieval"),
    "finetune": ("coclr.evaluation.finetune", "fine-tune the whole network"),
    "ablation": ("coclr.evaluation.ablation", "collect the results into the ablation table"),
    "report-figures": ("coclr.report", "figures for the Snakemake report"),
}
COST_LINE = "coclr {command}: {wall_s:.1f} s wall, peak memory {peak_mib:.0f} MiB"


def peak_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coclr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage or the unknown-command error
        return
    name, rest = argv[0], argv[1:]
    logs.configure()
    die_with_parent(signal.SIGKILL)
    # A SIGTERM ignored by the shell around the job (the SLURM profile's precommand) must not keep a
    # command without a handler running: it ends it, as it would any program. Trainers install their own.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    start = time.perf_counter()  # the module's imports (torch) are part of a stage's cost
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"python -m coclr {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    try:
        module.run(parser.parse_args(rest))
    except (DiskFull, ShardError) as error:  # raised deep inside any command: the message says which one
        raise SystemExit(f"python -m coclr {name}: {error}") from error
    except CoclrError as error:  # the message names the file or key and the fix; a traceback adds nothing
        raise SystemExit(str(error) or error.status) from None
    # A record, not a log line: benchmarks/stages.py reads it back (no time stamp, every rank).
    print(COST_LINE.format(command=name, wall_s=time.perf_counter() - start, peak_mib=peak_mib()), file=sys.stderr)
