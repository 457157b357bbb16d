"""Run (parts of) the CoCLR chain on a synthetic design, in memory, one thread, and log the result.

    python experiments/testbed.py --name base --stages infonce_rgb,infonce_flow,random
    python experiments/testbed.py --name k5p09 --stages coclr --topk 5 --drop-self 0.9

Stages: random (untrained encoders), infonce_rgb, infonce_flow, uber_rgb, uber_flow,
coclr (``--cycles`` cycles of an RGB then a flow stage, starting from the InfoNCE
checkpoints of the same settings, which are trained first if missing). Trained
weights are cached under /tmp/coclr_testbed so variants share their initialisation.
Each run appends one JSON line (settings, accuracies, seconds) to experiments/runs.jsonl.
"""

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import testbed_data  # noqa: E402
import testbed_train  # noqa: E402

from coclr import synthetic  # noqa: E402

RUNS = Path(__file__).parent / "runs.jsonl"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--stages", default="random,infonce_rgb,infonce_flow,coclr,uber_rgb")
    p.add_argument("--design", nargs="*", default=[], help="synthetic.Config overrides, key=value")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--min-area", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--queue", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ep-infonce", type=int, default=20)
    p.add_argument("--ep-coclr", type=int, default=10)
    p.add_argument("--ep-uber", type=int, default=40)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--drop-self", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def design(args) -> synthetic.Config:
    types = {f.name: f.type for f in fields(synthetic.Config)}
    cast = {"int": int, "float": float, int: int, float: float}
    overrides = dict(kv.split("=") for kv in args.design)
    return synthetic.Config(**{k: cast[types[k]](v) for k, v in overrides.items()})


def main() -> None:
    torch.set_num_threads(1)
    args = parse()
    cfg = design(args)
    hp = {k: getattr(args, k) for k in ("T", "crop", "min_area", "batch", "queue", "temperature", "momentum", "lr")}
    arch = {"width": args.width, "depth": args.depth}
    data = testbed_data.load(cfg)
    base = json.dumps([asdict(cfg), arch, hp, args.seed], sort_keys=True)
    result = {"name": args.name, "design": asdict(cfg), "arch": arch, "hp": hp,
              "epochs": {"infonce": args.ep_infonce, "coclr": args.ep_coclr, "uber": args.ep_uber},
              "topk": args.topk, "drop_self": args.drop_self, "cycles": args.cycles,
              "seconds_generate": float(data["seconds_generate"]),
              "seconds_decode_flow": float(data["seconds_decode_flow"])}

    def trained(view, loss, epochs):
        key = hashlib.sha1(f"{base}{view}{loss}{epochs}".encode()).hexdigest()[:12]
        path = testbed_data.CACHE / f"model_{key}.pt"
        model = testbed_train.new_model(view, arch, hp, args.seed)
        if path.exists():
            model.load_state_dict(torch.load(path))
            return model, None
        log = testbed_train.train_stage(model, view, data, hp, epochs, loss, args.seed)
        torch.save(model.state_dict(), path)
        return model, log

    def record(key, model, view, log=None):
        result[key] = testbed_train.evaluate(testbed_train.features(model, view, data, hp), data)
        if log is not None:
            result[key].update(seconds=round(log["seconds"], 1), loss=round(log["loss"][-1], 3))
            if any(p == p for p in log["purity"]):
                result[key]["purity"] = round(log["purity"][-1], 3)
        print(key, result[key], flush=True)

    stages = args.stages.split(",")
    if "random" in stages:
        for view in ("rgb", "flow"):
            record(f"random_{view}", testbed_train.new_model(view, arch, hp, args.seed), view)
    for view in ("rgb", "flow"):
        if f"infonce_{view}" in stages or "coclr" in stages:
            model, log = trained(view, "infonce", args.ep_infonce)
            if log is not None or f"infonce_{view}" in stages:
                record(f"infonce_{view}", model, view, log)
    if "coclr" in stages:
        models = {v: trained(v, "infonce", args.ep_infonce)[0] for v in ("rgb", "flow")}
        for cycle in range(1, args.cycles + 1):
            for view, other in (("rgb", "flow"), ("flow", "rgb")):
                log = testbed_train.train_stage(models[view], view, data, hp, args.ep_coclr, "coclr",
                                        args.seed + 10 * cycle, models[other], args.topk, args.drop_self)
                record(f"coclr{cycle}_{view}", models[view], view, log)
    for view in ("rgb", "flow"):
        if f"uber_{view}" in stages:
            model, log = trained(view, "ubernce", args.ep_uber)
            record(f"uber_{view}", model, view, log)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with RUNS.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
