"""``python -m coclr ablation``: per-model results -> summary files -> the ablation table.

``collect`` gathers the per-model JSONs of one task (linear probe, retrieval or
fine-tune; RGB, flow and two-stream of every method) into one file that keeps
each run's full record: settings, checkpoints with sha256, epochs, wall time.
Runs of several official splits (``--split K --runs ...`` per split) are kept
per split and averaged, as HMDB51 and UCF101 results are reported.
``table`` puts the headline number of each task side by side, one row per
method (random init, InfoNCE, CoCLR after each cycle, UberNCE), as JSON and
as a Markdown table: the mean over the splits, then each split.
"""

import json
import time
from pathlib import Path

from coclr.io import file_record, write_json, write_text
from coclr.naming import RESULT_VIEWS, cycle_of

VIEW_NAMES = {"rgb": "RGB", "flow": "flow", "two_stream": "two-stream"}
# Task -> (headline metric, column title).
HEADLINE = {"linear_probe": ("top1", "linear probe top-1"), "retrieval": ("R@1", "retrieval R@1"),
            "finetune": ("top1", "fine-tune top-1")}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    collect = sub.add_parser("collect", help="gather the per-model results of one task")
    collect.add_argument("--runs", nargs="+", action="append", required=True,
                         help="per-model result JSONs (once per --split when several splits are collected)")
    collect.add_argument("--split", type=int, action="append", help="official split of the next --runs")
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
    cycle = cycle_of(method)
    if cycle is not None:
        return f"CoCLR, cycle {cycle}"
    return {"random": "random init", "infonce": "InfoNCE", "ubernce": "UberNCE (oracle)"}.get(method, method)


def keyed(runs: list) -> dict:
    """Metrics of runs keyed by method then view, in the order given."""
    results = {}
    for run in runs:
        results.setdefault(run["method"], {})[run["view"]] = run["metrics"]
    return results


def mean_results(per_split: dict) -> dict:
    """Per method and view, each metric averaged over the splits (those run on every split)."""
    splits = list(per_split.values())
    mean = {}
    for method, views in splits[0].items():
        for view, metrics in views.items():
            if all(view in split.get(method, {}) for split in splits):
                mean.setdefault(method, {})[view] = {
                    name: sum(split[method][view][name] for split in splits) / len(splits) for name in metrics}
    return mean


def collect(groups: dict) -> dict:
    """One task's runs, given per split (``{split: runs}``; one ``None`` key when splits are not named)."""
    runs = [{**run, "split": split} if split is not None else run for split, group in groups.items() for run in group]
    tasks = {run["task"] for run in runs}
    if len(tasks) != 1:
        raise SystemExit(f"runs of several tasks ({', '.join(sorted(tasks))}): collect one task at a time")
    summary = {"task": tasks.pop()}
    if None in groups:
        summary["results"] = keyed(runs)
    else:
        per_split = {str(split): keyed(group) for split, group in groups.items()}
        summary.update(splits=list(groups), results=mean_results(per_split), per_split=per_split)
    return {**summary, "runs": runs, "wall_s": sum(run["wall_s"] for run in runs)}


def rows(collected: dict, results_of) -> list:
    """Per method, the headline number of each task and view (None when not run)."""
    methods = list(dict.fromkeys(m for summary in collected.values() for m in results_of(summary)))
    out = []
    for method in methods:
        row = {"method": method, "title": method_title(method)}
        for task, summary in collected.items():
            metric = HEADLINE[task][0]
            results = results_of(summary).get(method, {})
            row[task] = {view: results[view][metric] if view in results else None for view in RESULT_VIEWS}
        out.append(row)
    return out


def table(collected: dict) -> dict:
    """Rows of the ablation (the mean over the splits) and, when splits are named, each split's rows."""
    ablation = {"tasks": list(collected), "metrics": {task: HEADLINE[task][0] for task in collected},
                "rows": rows(collected, lambda summary: summary["results"])}
    named = [summary["splits"] for summary in collected.values() if "splits" in summary]
    if named:
        if any(splits != named[0] for splits in named) or len(named) != len(collected):
            raise SystemExit(f"the collected tasks cover different splits ({named}): collect every task on the same ones")
        ablation["splits"] = named[0]
        ablation["per_split"] = {str(k): rows(collected, lambda summary: summary["per_split"][str(k)])
                                 for k in named[0]}
    return ablation


def markdown_rows(tasks, rows_) -> list:
    header = ["method"] + [f"{HEADLINE[t][1]}, {VIEW_NAMES[v]}" for t in tasks for v in RESULT_VIEWS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" + " ---: |" * (len(header) - 1)]
    for row in rows_:
        cells = ["-" if row[t][v] is None else f"{row[t][v]:.1f}" for t in tasks for v in RESULT_VIEWS]
        lines.append("| " + " | ".join([row["title"], *cells]) + " |")
    return lines


def markdown(ablation: dict) -> str:
    """The table; with several splits, the mean first and then one table per split."""
    tasks, splits = ablation["tasks"], ablation.get("splits", [])
    if len(splits) < 2:
        return "\n".join(markdown_rows(tasks, ablation["rows"])) + "\n"
    lines = [f"Mean over splits {', '.join(map(str, splits))}:", "", *markdown_rows(tasks, ablation["rows"])]
    for k in splits:
        lines += ["", f"Split {k}:", "", *markdown_rows(tasks, ablation["per_split"][str(k)])]
    return "\n".join(lines) + "\n"


def run(args) -> None:
    start = time.time()
    if args.action == "collect":
        if args.split and len(args.split) != len(args.runs):
            raise SystemExit(f"{len(args.split)} --split for {len(args.runs)} --runs: give one --split before each --runs")
        if not args.split and len(args.runs) > 1:
            raise SystemExit("several --runs groups need a --split each")
        splits = args.split or [None]
        write_json(args.out, collect({k: [read_json(path) for path in group] for k, group in zip(splits, args.runs)}))
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
