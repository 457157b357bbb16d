"""Which training augmentation the embedded test bed should use: the reference's or the earlier one.

Reruns the RGB side of the CoCLR chain (cycle-1 RGB, cycle-1 flow, cycle-2 RGB) from the same
InfoNCE models with each recipe and several training seeds, and optionally the RGB UberNCE
oracle, then scores every RGB model with the linear probe and retrieval (test split 1), as the
workflow does. Needs the main job's data and InfoNCE models:

    snakemake --cores all models/synthetic/infonce_rgb.pt models/synthetic/infonce_flow.pt data/synthetic/split1.csv
    python -m benchmarks.augment_study --seeds 0 1 2 --jobs 2

Prints one row per recipe and stage (mean, standard deviation, min-max, each seed) and writes
them to ``--out`` (JSON). docs/synthetic.md holds the measured table.
"""

import argparse
import glob
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from coclr import config as coclr_config

# The clip.* settings of each recipe (workflow/schemas/config.schema.yaml documents every key).
RECIPES = {
    "reference": {"colour_views": "reference", "one_window": 0.5, "flow_colour": True, "grey": "channel",
                  "crop": "reference", "interpolation": "bicubic"},
    "every view coloured": {"colour_views": "every", "one_window": 0, "flow_colour": False, "grey": "luma",
                            "crop": "inception", "interpolation": "bilinear"},
}


def run(*args, log):
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "coclr", *map(str, args)], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"coclr {args[0]} failed: see {log}")


class Study:
    def __init__(self, args):
        self.dataset, self.work = args.dataset, Path(args.work)
        cfg = coclr_config.load()
        self.settings = coclr_config.resolve(cfg, self.dataset)
        self.settings["resources"] = cfg["resources"]
        self.frames = sorted(glob.glob(f"data/{self.dataset}/frames/shard_*.h5"))
        self.flow = sorted(glob.glob(f"data/{self.dataset}/flow/shard_*.h5"))
        self.manifest = f"data/{self.dataset}/manifest.csv"

    def settings_json(self, recipe):
        settings = json.loads(json.dumps(self.settings))
        settings["clip"].update(RECIPES[recipe])
        return json.dumps(settings)

    def chain(self, recipe, seed, oracle):
        """The models of one recipe and seed: {stage: RGB checkpoint}."""
        out = self.work / recipe.replace(" ", "_") / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        settings, models = self.settings_json(recipe), f"models/{self.dataset}"
        latest = {"rgb": f"{models}/infonce_rgb.pt", "flow": f"{models}/infonce_flow.pt"}
        rgb = {}
        for cycle, view in ((1, "rgb"), (1, "flow"), (2, "rgb")):
            name = f"coclr_c{cycle}_{view}"
            other = "flow" if view == "rgb" else "rgb"
            target = out / f"{name}.pt"
            if not target.exists():
                run("cotrain", "--view", view, "--init", latest[view], "--miner", latest[other],
                    "--manifest", self.manifest, "--frames", *self.frames, "--flow", *self.flow,
                    "--run-dir", out / "runs" / name, "--out", target, "--settings", settings, "--seed", seed,
                    log=out / f"{name}.log")
            latest[view] = str(target)
            if view == "rgb":
                rgb[f"CoCLR c{cycle}"] = target
        if oracle:
            target = out / "ubernce_rgb.pt"
            if not target.exists():
                run("pretrain", "--view", "rgb", "--loss", "ubernce", "--manifest", self.manifest,
                    "--frames", *self.frames, "--run-dir", out / "runs" / "ubernce_rgb", "--out", target,
                    "--settings", settings, "--seed", seed, log=out / "ubernce_rgb.log")
            rgb["UberNCE"] = target
        return rgb

    def score(self, checkpoint):
        """(linear probe top-1, retrieval R@1) of an RGB model on test split 1."""
        checkpoint = Path(checkpoint)
        stem = self.work / "scores" / checkpoint.parent.parent.name / checkpoint.parent.name / checkpoint.stem
        stem.parent.mkdir(parents=True, exist_ok=True)
        features, probe, retrieval = (stem.with_suffix(s) for s in (".features.pt", ".probe.json", ".retrieval.json"))
        if not probe.exists():
            run("features", "--view", "rgb", "--checkpoint", checkpoint, "--manifest", f"data/{self.dataset}/split1.csv",
                "--frames", *self.frames, "--out", features, "--settings", json.dumps(self.settings),
                log=stem.with_suffix(".features.log"))
            run("linear-probe", "--features", features, "--out", probe,
                "--settings", json.dumps(self.settings), log=stem.with_suffix(".probe.log"))
            run("retrieval", "--features", features, "--out", retrieval, log=stem.with_suffix(".retrieval.log"))
        return (json.loads(probe.read_text())["metrics"]["top1"],
                json.loads(retrieval.read_text())["metrics"]["R@1"])


def summary(values):
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--oracle", action="store_true", help="also the RGB UberNCE oracle of each recipe and seed")
    parser.add_argument("--jobs", type=int, default=2, help="chains run side by side (one thread each)")
    parser.add_argument("--work", default="runs/augment_study")
    parser.add_argument("--out", default="runs/augment_study/results.json")
    args = parser.parse_args(argv)
    study = Study(args)
    runs = [(recipe, seed) for recipe in args.recipes for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        chains = dict(zip(runs, pool.map(lambda r: study.chain(*r, args.oracle), runs)))
        scored = {key: dict(zip(models, pool.map(study.score, models.values()))) for key, models in chains.items()}
    infonce = study.score(f"models/{args.dataset}/infonce_rgb.pt")
    results = {"seeds": args.seeds, "infonce_rgb": infonce,
               "runs": {f"{recipe}/seed{seed}": scores for (recipe, seed), scores in scored.items()}}
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"RGB linear probe top-1 / retrieval R@1; InfoNCE (shared starting point) {infonce[0]:.1f} / {infonce[1]:.1f}")
    print("| recipe | stage | probe top-1: mean ± std (min-max) | R@1 | per seed (probe) |")
    print("| --- | --- | --- | --- | --- |")
    for recipe in args.recipes:
        for stage in scored[(recipe, args.seeds[0])]:
            probes = [scored[(recipe, s)][stage][0] for s in args.seeds]
            recalls = [scored[(recipe, s)][stage][1] for s in args.seeds]
            print(f"| {recipe} | {stage} | {summary(probes)} | {summary(recalls)} | "
                  f"{' / '.join(f'{p:.1f}' for p in probes)} |")


if __name__ == "__main__":
    main()
