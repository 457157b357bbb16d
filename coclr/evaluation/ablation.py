"""``python -m coclr ablation``: per-model results -> summary files -> the ablation table.

``collect`` gathers the per-model JSONs of one task (linear probe, retrieval or
fine-tune; RGB, flow and two-stream of every method) into one file that keeps
each run's full record: settings, checkpoints with sha256, epochs, wall time.
``table`` puts the headline number of each task side by side, one row per
method (random init, InfoNCE, CoCLR after each cycle, UberNCE), as JSON and
as a Markdown table.
"""

import json
import re
import time
from pathlib import Path

from coclr.io import file_record, write_json, write_text

VIEWS = ("rgb", "flow", "two_stream")
VIEW_NAMES = {"rgb": "RGB", "flow": "flow", "two_stream": "two-stream"}
# Task -> (headline metric, column title).
HEADLINE = {"linear_probe": ("top1", "linear probe top-1"), "retrieval": ("R@1", "retrieval R@1"),
            "finetune": ("top1", "fine-tune top-1")}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    collect = sub.add_parser("collect", help="gather the per-model results of one task")
    collect.add_argument("--runs", nargs="+", required=True, help="per-model result JSONs")
    collect.add_argument("--out", required=True)
    table = sub.add_parser("table", help="the ablation table from the collected results")
    table.add_argument("--linear-probe", required=True, help="collected linear-probe results")
    table.add_argument("--retrieval", required=True, help="collected retrieval results")
    table.add_argument("--finetune", help="collected fine-tuning results (their methods get the extra columns)")
    table.add_argument("--out", required=True, help="ablation JSON")
    table.add_argument("--markdown", required=True, help="ablation Markdown table")


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def method_title(method) -> str:
    """``coclr_c2`` -> ``CoCLR, cycle 2``; the other rows by name."""
    cycle = re.fullmatch(r"coclr_c(\d+)", method)
    if cycle:
        return f"CoCLR, cycle {cycle.group(1)}"
    return {"random": "random init", "infonce": "InfoNCE", "ubernce": "UberNCE (oracle)"}.get(method, method)


def collect(runs: list) -> dict:
    """One task's runs keyed by method then view, in the order given."""
    tasks = {run["task"] for run in runs}
    if len(tasks) != 1:
        raise SystemExit(f"runs of several tasks ({', '.join(sorted(tasks))}): collect one task at a time")
    results = {}
    for run in runs:
        results.setdefault(run["method"], {})[run["view"]] = run["metrics"]
    return {"task": tasks.pop(), "results": results, "runs": runs, "wall_s": sum(run["wall_s"] for run in runs)}


def table(collected: dict) -> dict:
    """Rows of the ablation: per method, the headline number of each task and view (None when not run)."""
    methods = list(dict.fromkeys(m for summary in collected.values() for m in summary["results"]))
    rows = []
    for method in methods:
        row = {"method": method, "title": method_title(method)}
        for task, summary in collected.items():
            metric = HEADLINE[task][0]
            results = summary["results"].get(method, {})
            row[task] = {view: results[view][metric] if view in results else None for view in VIEWS}
        rows.append(row)
    return {"tasks": list(collected), "metrics": {task: HEADLINE[task][0] for task in collected}, "rows": rows}


def markdown(ablation: dict) -> str:
    tasks = ablation["tasks"]
    header = ["method"] + [f"{HEADLINE[t][1]}, {VIEW_NAMES[v]}" for t in tasks for v in VIEWS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" + " ---: |" * (len(header) - 1)]
    for row in ablation["rows"]:
        cells = ["-" if row[t][v] is None else f"{row[t][v]:.1f}" for t in tasks for v in VIEWS]
        lines.append("| " + " | ".join([row["title"], *cells]) + " |")
    return "\n".join(lines) + "\n"


def run(args) -> None:
    start = time.time()
    if args.action == "collect":
        write_json(args.out, collect([read_json(path) for path in args.runs]))
        return
    sources = {"linear_probe": args.linear_probe, "retrieval": args.retrieval, "finetune": args.finetune}
    sources = {task: path for task, path in sources.items() if path}
    collected = {task: read_json(path) for task, path in sources.items()}
    ablation = table(collected)
    ablation["checkpoints"] = list({c["sha256"]: c for s in collected.values() for run in s["runs"]
                                    for c in run["checkpoints"]}.values())
    ablation["sources"] = {task: file_record(path) for task, path in sources.items()}
    ablation["wall_s"] = time.time() - start
    write_json(args.out, ablation)
    write_text(args.markdown, markdown(ablation))
