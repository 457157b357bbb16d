"""Job timeline of a finished Snakemake run: which job ran when, as a table with a text Gantt chart.

    python -m benchmarks.timeline [.snakemake/log/<run>.snakemake.log] [--width 60]

Reads Snakemake's own run log (default: the newest in ``.snakemake/log`` of the
working directory): each job's start is the timestamp before its ``rule NAME:``
block, its end the timestamp before ``Finished jobid: N``. Times are whole
seconds, as Snakemake logs them. The last lines give the wall time, the job-seconds
and, per rule, the total time: what to shorten next.
"""

import argparse
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


def parse(lines) -> list:
    """[(rule, wildcards, start, end)] of every finished job, in order of start (datetimes)."""
    stamp, current, jobs, ends = None, None, {}, {}
    for line in lines:
        line = line.rstrip("\n")
        if match := STAMP.match(line):
            stamp = datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif match := START.match(line):
            current = {"rule": match.group(1), "wildcards": "", "start": stamp}
        elif current is not None and (match := JOBID.match(line)):
            jobs[int(match.group(1))] = current
        elif current is not None and (match := WILDCARDS.match(line)):
            current["wildcards"] = match.group(1)
        elif match := FINISHED.match(line):
            ends[int(match.group(1))] = stamp
    finished = [(j["rule"], j["wildcards"], j["start"], ends[i]) for i, j in jobs.items() if i in ends]
    return sorted(finished, key=lambda job: job[2])


def table(jobs, width=60) -> str:
    """Markdown table, one row per job, with a bar placing it in the run's span."""
    if not jobs:
        return "no finished jobs in the log"
    t0 = jobs[0][2]
    span = max((end - t0).total_seconds() for *_, end in jobs) or 1
    rows = ["| job | wildcards | start (s) | end (s) | seconds | timeline |", "| --- | --- | ---: | ---: | ---: | --- |"]
    per_rule = defaultdict(float)
    for rule, wildcards, start, end in jobs:
        a, b = (start - t0).total_seconds(), (end - t0).total_seconds()
        per_rule[rule] += b - a
        lo, hi = int(a / span * width), max(int(b / span * width), int(a / span * width) + 1)
        bar = "." * lo + "#" * (hi - lo) + "." * (width - hi)
        rows.append(f"| {rule} | {wildcards} | {a:.0f} | {b:.0f} | {b - a:.0f} | `{bar}` |")
    busy = sum(per_rule.values())
    rows.append("")
    rows.append(f"wall {span:.0f} s, {busy:.0f} job-seconds; per rule: "
                + ", ".join(f"{rule} {s:.0f} s" for rule, s in sorted(per_rule.items(), key=lambda kv: -kv[1])))
    return "\n".join(rows)


def newest_log(workdir=".") -> Path:
    logs = sorted(Path(workdir, ".snakemake", "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"no Snakemake run log under {Path(workdir, '.snakemake', 'log')}: pass the log's path")
    return logs[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", help="a .snakemake/log/*.snakemake.log (default: the newest here)")
    parser.add_argument("--width", type=int, default=60, help="characters of the timeline bar")
    args = parser.parse_args()
    path = Path(args.log) if args.log else newest_log()
    if not path.exists():
        raise SystemExit(f"{path} does not exist: pass a .snakemake/log/*.snakemake.log of a finished run")
    print(f"{path}\n")
    print(table(parse(path.read_text().splitlines()), args.width))


if __name__ == "__main__":
    main()
