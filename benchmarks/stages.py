"""Stage costs of a finished run, read from its job logs: wall time and peak memory per stage.

    python -m benchmarks.stages logs/ucf101

Every ``python -m coclr`` command ends its log with one cost line (coclr.cli
COST_LINE). Jobs of one stage (``flow_00000.log``, ``flow_00001.log``, ...)
are grouped by the command and the log name without its shard or model part.
"""

import argparse
import re
from pathlib import Path

from benchmarks.data import print_table
from coclr.naming import RESULT_VIEWS

COST = re.compile(r"^coclr (?P<command>[\w-]+): (?P<wall>[\d.]+) s wall, peak memory (?P<peak>\d+) MiB$", re.M)


def stage_of(log: Path, command: str) -> str:
    """``frames_00001`` -> ``frames``; ``features_coclr_c1_rgb`` -> ``features rgb``; ``coclr_c2_flow`` ->
    ``cotrain flow``: one row per stage and view."""
    view = next((v for v in RESULT_VIEWS if log.stem.endswith(v)), "")
    return f"{command} {view}".strip()


def job_costs(log_dir) -> list:
    """(log, command, wall s, peak MiB) of every job log under ``log_dir`` that has a cost line."""
    jobs = []
    for log in sorted(Path(log_dir).rglob("*.log"), key=lambda p: p.stat().st_mtime):
        for match in COST.finditer(log.read_text(errors="replace")):
            jobs.append((log, match["command"], float(match["wall"]), int(match["peak"])))
    return jobs


def stage_table(log_dir) -> list:
    """Rows [stage, jobs, total wall s, longest job s, peak MiB], in the order the stages' first jobs ended."""
    stages = {}
    for log, command, wall, peak in job_costs(log_dir):
        row = stages.setdefault(stage_of(log, command), [0, 0.0, 0.0, 0])
        row[0] += 1
        row[1] += wall
        row[2] = max(row[2], wall)
        row[3] = max(row[3], peak)
    return [[name, n, f"{total:.1f}", f"{longest:.1f}", peak] for name, (n, total, longest, peak) in stages.items()]


HEADERS = ["stage", "jobs", "wall s (all jobs)", "longest job s", "peak MiB (one job)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log_dir", help="a run's log folder, e.g. logs/ucf101")
    args = parser.parse_args()
    rows = stage_table(args.log_dir)
    if not rows:
        raise SystemExit(f"no cost lines in the logs under {args.log_dir}: is it a run's log folder?")
    print_table(rows, HEADERS)


if __name__ == "__main__":
    main()
