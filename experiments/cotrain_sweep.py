"""How reliably does one CoCLR stage lift the RGB network? Seeds and settings, through the pipeline.

    python experiments/cotrain_sweep.py --workdir /tmp/fullrun3 --name base --seeds 0 1 2 3 \
        [--set cotrain.topk=20 --set optim.lr=2e-3 ...] [--parallel 2]

``--workdir`` is a directory where the main job ran (``snakemake --cores all``):
its frame/flow shards and InfoNCE models are reused, and so is its checkout of
``coclr`` (commands run there). Each seed runs the pipeline's own entry points, exactly as the rules call them: ``cotrain`` (RGB,
cycle 1: InfoNCE-RGB init, InfoNCE-flow miner), ``features``, ``linear-probe``.
``--set`` overrides keys of the resolved ``cpu`` settings (dotted paths, YAML
values). One JSON line per run goes to experiments/cotrain_runs.jsonl.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from coclr import config as coclr_config

LOG = Path(__file__).with_name("cotrain_runs.jsonl")


def settings(overrides) -> dict:
    resolved = coclr_config.resolve(coclr_config.load(), "synthetic")
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = resolved
        for parent in parents:
            node = node.setdefault(parent, {})
        parsed = yaml.safe_load(value)
        try:  # YAML 1.1 reads "3e-3" as a string
            parsed = float(parsed) if isinstance(parsed, str) else parsed
        except ValueError:
            pass
        node[leaf] = parsed
    return resolved


def run_seed(work: Path, out: Path, resolved: dict, seed: int) -> dict:
    data = work / "data" / "synthetic"
    common = ["--manifest", str(data / "manifest.csv"), "--frames", *map(str, sorted(data.glob("frames/*.h5"))),
              "--flow", *map(str, sorted(data.glob("flow/*.h5")))]
    text = json.dumps(resolved)
    model, features, probe = out / f"rgb_s{seed}.pt", out / f"rgb_s{seed}_features.pt", out / f"rgb_s{seed}.json"
    start = time.time()
    steps = [
        ["cotrain", "--view", "rgb", "--init", str(work / "models/synthetic/infonce_rgb.pt"),
         "--miner", str(work / "models/synthetic/infonce_flow.pt"), *common, "--run-dir", str(out / f"run_s{seed}"),
         "--out", str(model), "--seed", str(seed), "--settings", text],
        ["features", "--view", "rgb", "--method", "coclr_c1", "--checkpoint", str(model), *common,
         "--out", str(features), "--settings", text],
        ["linear-probe", "--features", str(features), "--out", str(probe), "--probs", str(out / f"probs_s{seed}.pt"),
         "--settings", text],
    ]
    for step in steps:
        subprocess.run([sys.executable, "-m", "coclr", *step], check=True, cwd=work, stdout=subprocess.DEVNULL,
                       stderr=open(out / f"log_s{seed}.txt", "a"))
    metrics = json.loads(probe.read_text())["metrics"]
    last_epoch = (out / f"run_s{seed}" / "metrics.csv").read_text().splitlines()[-1]
    return {"seed": seed, "top1": metrics["top1"], "seconds": round(time.time() - start), "last_epoch": last_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    resolved = settings(args.overrides)
    out = Path(tempfile.mkdtemp(prefix=f"sweep_{args.name}_"))
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda s: run_seed(args.workdir, out, resolved, s), args.seeds))
    top1 = [r["top1"] for r in runs]
    record = {"name": args.name, "overrides": args.overrides, "runs": runs,
              "mean_top1": round(sum(top1) / len(top1), 1), "min_top1": min(top1), "max_top1": max(top1)}
    with LOG.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
