"""The training step against its floor: what the data path costs beyond the network.

    python -m benchmarks.step [--steps 20] [--data data/synthetic] [--paper] [--real DIR]

- floor: forward (query and momentum-key encoders) and backward of the InfoNCE step on a batch
  already in memory as network input: the least a step can cost;
- step: the whole step as a pretraining job runs it: the loader (read, decode, crop), the move
  to the device with the colour augmentation, forward, backward, Adam, the queue;
- ratio = step / floor, and the step's parts (loader, colour and input, network, optimiser).

Rows for the `cpu` preset on the embedded data (``--data``, the main job's shards, built when
missing) and on real camera footage (tests/realdata.py, cut at the embedded size), RGB and flow
views, and the `paper` preset's floor (full S3D, 32x128x128) with its step on real footage.
One thread, as the pipeline's jobs (``resources.threads``). Figures go to
benchmarks/measured.json (section "step").
"""

import argparse
import glob
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.data import machine, print_table, record
from coclr import config as coclr_config
from coclr.augment import RandomColour
from coclr.batch import collate, to_device
from coclr.clips import ClipReader, TwoClipDataset, usable_videos
from coclr.losses import info_nce
from coclr.shards import flow_store, frame_store, in_memory
from coclr.training import pretrain
from coclr.training.stage import build_moco
from coclr.training.trainer import resumable_loader


def preset(name: str) -> dict:
    config = coclr_config.load(overrides={"preset": name})
    settings = coclr_config.resolve(config, "synthetic")
    settings["resources"] = config["resources"]
    return settings


def real_footage(root: Path, size, frames, groups, clips) -> dict:
    """A UCF101-layout dataset cut from the real footage, with its frame and flow shards (those
    under ``root`` reused)."""
    if (root / "complete").exists():
        manifest = pd.read_csv(root / "manifest.csv")
        return {"manifest": root / "manifest.csv",
                **{kind: [root / f"{kind}/shard_{s:05d}.h5" for s in sorted(manifest["shard"].unique())]
                   for kind in ("frames", "flow")}}
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from realdata import ucf101_layout

    layout = ucf101_layout(root / "videos", groups=groups, clips=clips, frames=frames, size=size)
    coclr = [sys.executable, "-m", "coclr"]
    subprocess.run([*coclr, "ingest", "--format", "ucf101", "--root", layout["root"], "--splits-dir",
                    layout["splits_dir"], "--videos-per-shard", "100", "--workers", "1", "--out", root / "manifest.csv"], check=True, capture_output=True)
    manifest = pd.read_csv(root / "manifest.csv")
    shards = {"frames": [], "flow": []}
    for shard in sorted(manifest["shard"].unique()):
        out = root / f"frames/shard_{shard:05d}.h5"
        subprocess.run([*coclr, "frames", "--manifest", root / "manifest.csv", "--shard", str(shard), "--out", out],
                       check=True, capture_output=True)
        shards["frames"].append(out)
        flow = root / f"flow/shard_{shard:05d}.h5"
        subprocess.run([*coclr, "flow", "--frames", out, "--out", flow, "--method", "tvl1_numba"], check=True,
                       capture_output=True)
        shards["flow"].append(flow)
    (root / "complete").touch()
    return {"manifest": root / "manifest.csv", **shards}


def embedded(data: Path) -> dict:
    if not (data / "manifest.csv").exists():
        subprocess.run(["snakemake", "--cores", "all", f"data/{data.name}/preflight.json"], check=True)
        subprocess.run(["snakemake", "--cores", "all", "--until", "flow"], check=True)
    return {"manifest": data / "manifest.csv", "frames": sorted(glob.glob(str(data / "frames/shard_*.h5"))),
            "flow": sorted(glob.glob(str(data / "flow/shard_*.h5")))}


def measure(settings, view, shards, steps, batch=None) -> dict:
    """Milliseconds per clip of the floor and of the whole step, and the step's parts.

    The step is the pretraining job's own (:func:`contrastive_step`, then zero_grad, backward and
    Adam as :class:`coclr.training.trainer.Trainer` runs them); its ``to_device`` is timed apart.
    Each step is followed by one floor pass on that step's input, so a load that changes during
    the run weighs on both alike.
    """
    torch.set_num_threads(settings["resources"]["threads"])
    torch.manual_seed(0)
    batch = batch or settings["optim"]["batch_size"]
    stores = {"rgb": frame_store(shards["frames"]) if view == "rgb" else None,
              "flow": flow_store(shards["flow"]) if view == "flow" else None}
    videos = usable_videos(pd.read_csv(shards["manifest"]), "train", [s for s in stores.values() if s])
    for name, kind in (("rgb", "frames"), ("flow", "flow")):  # as coclr.training.stage.prepare does
        if stores[name] is not None:
            stores[name] = in_memory(stores[name], videos["video_id"], settings["resources"]["memory_cache_mib"], kind)
    dataset = TwoClipDataset(videos, ClipReader(stores["rgb"], stores["flow"]), settings["clip"],
                             settings["model"]["flow_channels"])
    loader = resumable_loader(dataset, batch, seed=0, collate=collate)
    model = build_moco(view, settings, torch.device("cpu"))
    optim = settings["optim"]
    optimiser = torch.optim.Adam(model.parameters(), lr=optim["lr"], weight_decay=optim["weight_decay"])
    timed = {}

    def timed_to_device(*args):
        tick = time.perf_counter()
        timed["ready"] = to_device(*args)
        timed["input"] = time.perf_counter() - tick
        return timed["ready"]

    pretrain.to_device = timed_to_device
    try:
        step = pretrain.contrastive_step(model, view, "infonce", torch.device("cpu"),
                                         RandomColour.from_settings(settings["clip"]))
        parts = {"loader": 0.0, "input": 0.0, "network": 0.0, "optimiser": 0.0}
        floor, done, epoch = 0.0, 0, 0
        while done <= steps:
            loader.batch_sampler.set_epoch(epoch)
            tick = time.perf_counter()
            for raw in loader:
                got = time.perf_counter()
                loss = step(raw).loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                computed = time.perf_counter()
                optimiser.step()
                stepped = time.perf_counter()
                ready = timed["ready"]
                out = model(ready["query"][view], ready["key"][view])
                optimiser.zero_grad(set_to_none=True)
                info_nce(out.logits).backward()
                floored = time.perf_counter()
                if done > 0:  # the first step warms up
                    seconds = (got - tick, timed["input"], computed - got - timed["input"], stepped - computed)
                    for name, value in zip(parts, seconds):
                        parts[name] += value
                    floor += floored - stepped
                done += 1
                if done > steps:
                    break
                tick = time.perf_counter()
            epoch += 1
    finally:
        pretrain.to_device = to_device
    clips = steps * batch
    whole = sum(parts.values())
    return {"floor_ms_per_clip": 1e3 * floor / clips, "step_ms_per_clip": 1e3 * whole / clips,
            "ratio": whole / floor, **{f"{k}_share": v / whole for k, v in parts.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (after one warm-up step)")
    parser.add_argument("--data", default="data/synthetic", help="the embedded dataset's folder")
    parser.add_argument("--paper", action="store_true", help="also the paper preset (full S3D) on real footage")
    parser.add_argument("--real", help="where the real-footage datasets are built and kept for later runs "
                                       "(default: a temporary folder)")
    args = parser.parse_args(argv)
    rows, figures = [], {}
    cpu = preset("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.real or tmp
        sources = {"embedded (synthetic)": embedded(Path(args.data)),
                   "real footage": real_footage(Path(tmp) / "real", (53, 40), 16, groups=4, clips=3)}
        cases = [(name, "cpu", cpu, view, shards, None) for name, shards in sources.items() for view in ("rgb", "flow")]
        if args.paper:
            paper_shards = real_footage(Path(tmp) / "paper", (171, 128), 34, groups=2, clips=1)
            cases += [("real footage 171x128", "paper", preset("paper"), view, paper_shards, 2) for view in ("rgb", "flow")]
        for name, preset_name, settings, view, shards, batch in cases:
            steps = args.steps if batch is None else 2
            result = measure(settings, view, shards, steps, batch)
            figures[f"{preset_name}_{view}_{name}"] = result
            rows.append([preset_name, view, name, batch or settings["optim"]["batch_size"],
                         f"{result['floor_ms_per_clip']:.2f}", f"{result['step_ms_per_clip']:.2f}",
                         f"{result['ratio']:.2f}x",
                         " / ".join(f"{100 * result[f'{p}_share']:.0f}" for p in ("loader", "input", "network",
                                                                                 "optimiser"))])
    record("step", figures)
    print(f"{machine()}\n")
    print_table(rows, ["preset", "view", "data", "batch", "floor ms/clip", "step ms/clip", "step / floor",
                       "loader / input+colour / network+queue / optimiser %"])


if __name__ == "__main__":
    main()
