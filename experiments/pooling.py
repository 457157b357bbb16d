"""Compare the two evaluation poolings (clip.eval_pooling) on existing features files.

    python experiments/pooling.py features/synthetic/split1/*.pt [--preset cpu] [--dataset synthetic]

Every features file holds both per-video poolings of one extraction pass
(coclr/evaluation/features.py): ``normalised_mean`` (each window's feature
L2-normalised, then averaged: the authors' code) and ``mean`` (raw average).
For each file and pooling this prints the linear-probe top-1 (the pipeline's
probe and selection, the dataset's `linear_probe` settings from config.yaml)
and retrieval R@1, and the mean difference over the files.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import print_table  # noqa: E402
from coclr import config as coclr_config  # noqa: E402
from coclr.evaluation.common import topk_accuracy  # noqa: E402
from coclr.evaluation.features import POOLINGS, load_features  # noqa: E402
from coclr.evaluation.linear_probe import probe_features  # noqa: E402
from coclr.evaluation.retrieval import recall_at_k, similarity  # noqa: E402


def scores(data: dict, pooling: str, probe_settings: dict) -> tuple:
    """(probe top-1, retrieval R@1) of one features file with one pooling."""
    train, test = data["train"], data["test"]
    train_split = {**train, "features": train["pooled"][pooling]}
    probs, _ = probe_features(train_split, test["pooled"][pooling], data["num_classes"], probe_settings)
    sim = similarity(test["pooled"][pooling], train["pooled"][pooling])
    r1 = recall_at_k(sim, test["labels"], train["labels"], ks=(1,))["R@1"]
    return topk_accuracy(probs, test["labels"], ks=(1,))["top1"], r1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", nargs="+", help="features files (coclr features)")
    parser.add_argument("--config", help="config.yaml whose linear_probe settings to use (default: the repo's)")
    parser.add_argument("--preset", help="preset whose linear_probe settings to use (default: the config's)")
    parser.add_argument("--dataset", help="dataset whose overrides apply (default: the config's)")
    args = parser.parse_args()
    config = coclr_config.load(args.config)
    config["preset"] = args.preset or config["preset"]
    probe = coclr_config.resolve(config, args.dataset)["linear_probe"]
    rows, gaps = [], {"probe": [], "r1": []}
    for path in args.features:
        data = load_features(path)
        if "pooled" not in data["train"]:
            raise SystemExit(f"{path} predates stored poolings: extract it again with `python -m coclr features`")
        (p_norm, r_norm), (p_raw, r_raw) = (scores(data, pooling, probe) for pooling in POOLINGS)
        gaps["probe"].append(p_norm - p_raw)
        gaps["r1"].append(r_norm - r_raw)
        rows.append([Path(path).stem, f"{p_norm:.1f}", f"{p_raw:.1f}", f"{r_norm:.1f}", f"{r_raw:.1f}"])
    mean = {key: sum(values) / len(values) for key, values in gaps.items()}
    rows.append(["mean difference (normalised - raw)", f"{mean['probe']:+.2f}", "", f"{mean['r1']:+.2f}", ""])
    print_table(rows, ["features", "probe top-1 normalised_mean", "probe top-1 mean", "R@1 normalised_mean",
                       "R@1 mean"])


if __name__ == "__main__":
    main()
