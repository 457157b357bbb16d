"""``python -m coclr ablation``: per-model results -> summary files -> the ablation table.

``collect`` gathers the per-model JSONs of one task (linear probe, retrieval or
fine-tune; RGB, flow and two-stream of every method) into one file that keeps
each run's full record: settings, checkpoints with sha256, epochs, wall time.
Runs of several seeds and official splits (``--seed S --split K --runs ...``
per group) are kept per seed and split and averaged over both, as HMDB51 and
UCF101 results are reported over splits; the seeds (each the mean over the
splits) give each cell's spread: sample standard deviation and range.
``table`` puts the headline number of each task side by side, one row per
method (random init, InfoNCE, CoCLR after each cycle, UberNCE), as JSON and
as a Markdown table: the mean (± spread over seeds), the paper's two claims
per seed, then each seed's table and each split's.
"""

import json
import statistics
import time
from pathlib import Path

from coclr.errors import CoclrError
from coclr.io import file_record, write_json, write_text
from coclr.naming import RESULT_VIEWS, coclr_method, cycle_of

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
    collect.add_argument("--seed", type=int, action="append", help="training seed of the next --runs (default 0)")
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


def mean_results(draws: list) -> dict:
    """Per method and view, each metric averaged over ``draws`` (keyed results; cells run in every draw)."""
    mean = {}
    for method, views in draws[0].items():
        for view, metrics in views.items():
            if all(view in draw.get(method, {}) for draw in draws):
                mean.setdefault(method, {})[view] = {
                    name: sum(draw[method][view][name] for draw in draws) / len(draws) for name in metrics}
    return mean


def spread(values: list) -> dict:
    """Sample standard deviation, range and count of one cell's per-seed values (std 0 for one seed)."""
    return {"std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values),
            "n": len(values)}


def spread_results(per_seed: dict) -> dict:
    """Per method, view and metric, the spread of the per-seed values (each the mean over the splits)."""
    seeds = list(per_seed.values())
    return {method: {view: {name: spread([seed[method][view][name] for seed in seeds]) for name in metrics}
                     for view, metrics in views.items()}
            for method, views in mean_results(seeds).items()}


def collect(groups: dict) -> dict:
    """One task's runs, given per seed and split (``{(seed, split): runs}``; split ``None`` when not named).

    ``results`` is the mean over every seed and split; ``spread`` how the seeds (each the mean over
    the splits) spread around it; ``per_seed`` and ``per_split`` each seed's and each split's means."""
    runs = [{**run, "seed": seed, **({"split": split} if split is not None else {})}
            for (seed, split), group in groups.items() for run in group]
    tasks = {run["task"] for run in runs}
    if len(tasks) != 1:
        raise CoclrError(f"runs of several tasks ({', '.join(sorted(tasks))}): collect one task at a time")
    draws = {key: keyed(group) for key, group in groups.items()}
    seeds = list(dict.fromkeys(seed for seed, _ in groups))
    splits = list(dict.fromkeys(split for _, split in groups))
    missing = [(seed, split) for seed in seeds for split in splits if (seed, split) not in draws]
    if missing:
        raise CoclrError(f"no runs for (seed, split) {missing}: collect every seed on every split")
    per_seed = {str(seed): mean_results([draws[seed, split] for split in splits]) for seed in seeds}
    summary = {"task": tasks.pop(), "seeds": seeds, "results": mean_results(list(per_seed.values())),
               "spread": spread_results(per_seed), "per_seed": per_seed}
    if splits != [None]:
        summary.update(splits=splits, per_split={str(split): mean_results([draws[seed, split] for seed in seeds])
                                                 for split in splits})
    return {**summary, "runs": runs, "wall_s": sum(run["wall_s"] for run in runs)}


def rows(collected: dict, results_of, spread_of=None) -> list:
    """Per method, the headline number of each task and view (None when not run), and with ``spread_of``
    its spread over the seeds."""
    methods = list(dict.fromkeys(m for summary in collected.values() for m in results_of(summary)))
    out = []
    for method in methods:
        row = {"method": method, "title": method_title(method)}
        for task, summary in collected.items():
            metric = HEADLINE[task][0]
            results = results_of(summary).get(method, {})
            row[task] = {view: results[view][metric] if view in results else None for view in RESULT_VIEWS}
        if spread_of:
            row["spread"] = {task: {view: spread_of(summary).get(method, {}).get(view, {}).get(HEADLINE[task][0])
                                    for view in RESULT_VIEWS} for task, summary in collected.items()}
        out.append(row)
    return out


def same_across_tasks(collected: dict, key):
    """The seeds (or splits) every task was collected on, refusing tasks collected on different ones."""
    named = [summary.get(key) for summary in collected.values()]
    if any(value != named[0] for value in named):
        raise CoclrError(f"the collected tasks cover different {key} ({named}): collect every task on the same ones")
    return named[0]


def claims(ablation: dict) -> dict:
    """The paper's two claims, per seed, on RGB: the last CoCLR cycle beats InfoNCE (probe top-1 and R@1),
    and the share of the InfoNCE-to-UberNCE gap it closes (probe top-1). Empty when a row is missing."""
    per_seed = {seed: {row["method"]: row for row in rows_} for seed, rows_ in ablation["per_seed"].items()}
    methods = next(iter(per_seed.values()))
    cycles = sorted(c for c in map(cycle_of, methods) if c)
    if not cycles or "infonce" not in methods:
        return {}
    last = coclr_method(cycles[-1])
    found = {}
    beats = {}
    for task in ("linear_probe", "retrieval"):
        if task not in ablation["tasks"]:
            continue
        diffs = {seed: rows_[last][task]["rgb"] - rows_["infonce"][task]["rgb"] for seed, rows_ in per_seed.items()}
        beats[task] = {"per_seed": diffs, "mean": statistics.mean(diffs.values()), "min": min(diffs.values()),
                       "held": sum(d > 0 for d in diffs.values()), "seeds": len(diffs)}
    if beats:
        found["coclr_beats_infonce"] = {"method": last, "view": "rgb", **beats}
    if "ubernce" in methods and "linear_probe" in ablation["tasks"]:
        closed = {}
        for seed, rows_ in per_seed.items():
            base, oracle = rows_["infonce"]["linear_probe"]["rgb"], rows_["ubernce"]["linear_probe"]["rgb"]
            closed[seed] = (rows_[last]["linear_probe"]["rgb"] - base) / (oracle - base) if oracle != base else None
        known = [c for c in closed.values() if c is not None]
        found["gap_to_oracle_closed"] = {"method": last, "view": "rgb", "task": "linear_probe", "per_seed": closed,
                                         **({"mean": statistics.mean(known), "min": min(known), "max": max(known)}
                                            if known else {})}
    return found


def table(collected: dict) -> dict:
    """Rows of the ablation (the mean over seeds and splits, with the spread over seeds), each seed's rows,
    each split's rows when splits are named, and the paper's two claims per seed."""
    ablation = {"tasks": list(collected), "metrics": {task: HEADLINE[task][0] for task in collected},
                "seeds": same_across_tasks(collected, "seeds"),
                "rows": rows(collected, lambda summary: summary["results"], lambda summary: summary["spread"])}
    ablation["per_seed"] = {str(s): rows(collected, lambda summary: summary["per_seed"][str(s)])
                            for s in ablation["seeds"]}
    splits = same_across_tasks(collected, "splits")
    if splits:
        ablation["splits"] = splits
        ablation["per_split"] = {str(k): rows(collected, lambda summary: summary["per_split"][str(k)]) for k in splits}
    ablation["claims"] = claims(ablation)
    return ablation


def cell(value, spread_=None) -> str:
    """``35.2``, or with a spread over several seeds ``35.2 ± 5.1 (28.0-41.0)``; ``-`` when not run."""
    if value is None:
        return "-"
    if spread_ and spread_["n"] > 1:
        return f"{value:.1f} ± {spread_['std']:.1f} ({spread_['min']:.1f}-{spread_['max']:.1f})"
    return f"{value:.1f}"


def markdown_rows(tasks, rows_) -> list:
    header = ["method"] + [f"{HEADLINE[t][1]}, {VIEW_NAMES[v]}" for t in tasks for v in RESULT_VIEWS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" + " ---: |" * (len(header) - 1)]
    for row in rows_:
        spreads = row.get("spread", {})
        cells = [cell(row[t][v], spreads.get(t, {}).get(v)) for t in tasks for v in RESULT_VIEWS]
        lines.append("| " + " | ".join([row["title"], *cells]) + " |")
    return lines


def claim_lines(found: dict) -> list:
    """The claims as sentences, with the per-seed values they rest on."""
    lines = []
    if "coclr_beats_infonce" in found:
        beats = found["coclr_beats_infonce"]
        parts = [f"{HEADLINE[task][1]} {b['mean']:+.1f} on average (min {b['min']:+.1f}; per seed "
                 f"{' / '.join(f'{d:+.1f}' for d in b['per_seed'].values())}), higher on {b['held']} of "
                 f"{b['seeds']} seeds"
                 for task, b in beats.items() if task in HEADLINE]
        lines.append(f"- CoCLR beats InfoNCE ({method_title(beats['method'])} - InfoNCE, RGB): " + "; ".join(parts) + ".")
    if "mean" in found.get("gap_to_oracle_closed", {}):
        gap = found["gap_to_oracle_closed"]
        per_seed = " / ".join("-" if c is None else f"{100 * c:.0f} %" for c in gap["per_seed"].values())
        lines.append(f"- Approaches the oracle ({method_title(gap['method'])}, RGB linear probe): closes "
                     f"{100 * gap['mean']:.0f} % of the InfoNCE-to-UberNCE gap on average (min {100 * gap['min']:.0f} %, "
                     f"max {100 * gap['max']:.0f} %; per seed {per_seed}).")
    return lines


def markdown(ablation: dict) -> str:
    """The table (with several seeds: mean ± std (min-max) over them), the claims, then each seed's
    table and each split's (with several)."""
    tasks, seeds, splits = ablation["tasks"], ablation["seeds"], ablation.get("splits") or []
    over = []
    if len(seeds) > 1:
        over.append(f"seeds {', '.join(map(str, seeds))} (mean ± standard deviation (min-max) over the seeds)")
    if len(splits) > 1:
        over.append(f"splits {', '.join(map(str, splits))}")
    lines = [f"Mean over {' and '.join(over)}:", ""] if over else []
    lines += markdown_rows(tasks, ablation["rows"])
    if ablation.get("claims"):
        lines += ["", *claim_lines(ablation["claims"])]
    if len(seeds) > 1:
        for s in seeds:
            mean_of = f", mean over splits {', '.join(map(str, splits))}" if len(splits) > 1 else ""
            lines += ["", f"Seed {s}{mean_of}:", "", *markdown_rows(tasks, ablation["per_seed"][str(s)])]
    if len(splits) > 1:
        for k in splits:
            mean_of = f", mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
            lines += ["", f"Split {k}{mean_of}:", "", *markdown_rows(tasks, ablation["per_split"][str(k)])]
    return "\n".join(lines) + "\n"


def run(args) -> None:
    start = time.time()
    if args.action == "collect":
        for name, given in (("--split", args.split), ("--seed", args.seed)):
            if given and len(given) != len(args.runs):
                raise CoclrError(f"{len(given)} {name} for {len(args.runs)} --runs: give one {name} before each --runs")
        if not (args.split or args.seed) and len(args.runs) > 1:
            raise CoclrError("several --runs groups need a --split or --seed each")
        keys = zip(args.seed or [0] * len(args.runs), args.split or [None] * len(args.runs))
        groups = {}
        for key, group in zip(keys, args.runs):
            groups.setdefault(key, []).extend(read_json(path) for path in group)
        write_json(args.out, collect(groups))
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
