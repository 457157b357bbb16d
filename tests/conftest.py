"""Shared fixtures: one tiny synthetic dataset, generated, ingested and extracted once per run."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Fewer scales and iterations than OpenCV's defaults: flow good enough to train on, in seconds.
FAST_FLOW = ["--param", "scales=3", "--param", "warps=2", "--param", "outer_iterations=2"]
TINY = dict(classes=4, train_groups=3, test_groups=2, clips_per_group=3, frames=16, size=40)


def coclr(*args, cwd=None):
    """Run ``python -m coclr ...`` as the Snakemake rules do; fail with its output."""
    result = subprocess.run([sys.executable, "-m", "coclr", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"coclr {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Videos, manifest, frame and flow shards of a 4-class synthetic set (60 videos, 3 shards)."""
    root = tmp_path_factory.mktemp("tiny")
    videos = root / "videos"
    gen = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    coclr("synthesize", "--out", videos, *gen, "--workers", 2)
    manifest = root / "manifest.csv"
    coclr("ingest", "--format", "synthetic", "--root", videos, "--videos-per-shard", 20, "--out", manifest)
    frames, flow = [], []
    for shard in sorted(pd.read_csv(manifest)["shard"].unique()):
        frames.append(root / "frames" / f"shard_{shard:05d}.h5")
        flow.append(root / "flow" / f"shard_{shard:05d}.h5")
        coclr("frames", "--manifest", manifest, "--shard", shard, "--out", frames[-1])
        coclr("flow", "--frames", frames[-1], "--out", flow[-1], "--batch-size", 64, *FAST_FLOW)
    return {"root": root, "videos": videos, "manifest": manifest, "frames": frames, "flow": flow}
