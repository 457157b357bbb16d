"""Shared fixtures: one tiny synthetic dataset, generated, ingested and extracted once per run."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from filelock import FileLock

from coclr import logs

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


def pytest_collection_modifyitems(config, items):
    """Longest files first: those whose tests run a whole DAG (marked with a timeout above
    pyproject's default), then the other end-to-end (slow) ones. Under pytest-xdist the long runs
    start at once and the short tests fill the cores at the end, instead of one long run finishing alone."""
    default_timeout = float(config.getini("timeout"))

    def rank(item):
        marker = item.get_closest_marker("timeout")
        if marker and marker.args and marker.args[0] > default_timeout:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    first = {}
    for item in items:
        first[item.path] = min(first.get(item.path, 2), rank(item))
    items.sort(key=lambda item: first[item.path])  # stable: the order within a file is kept


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def logging_as_the_entry_point():
    """The package's log lines on stderr as `python -m coclr` configures them, for tests that call library
    code directly (a library logs nothing of its own accord)."""
    logs.configure({})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, worker_id):
    """Videos, manifest, frame and flow shards of a 4-class synthetic set (60 videos, 3 shards), read-only.

    Built once per test run: under pytest-xdist the first worker that asks builds it in the run's
    shared temporary folder while the others wait on its lock (building it cost each worker ~100 s).
    """
    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "tiny"
    with FileLock(f"{root}.lock"):
        if not (root / "complete").exists():
            build_tiny_dataset(root)
            (root / "complete").touch()
    shards = sorted(pd.read_csv(root / "manifest.csv")["shard"].unique())
    return {"root": root, "videos": root / "videos", "manifest": root / "manifest.csv",
            "frames": [shard_path(root, "frames", shard) for shard in shards],
            "flow": [shard_path(root, "flow", shard) for shard in shards]}


def shard_path(root, kind, shard):
    """``<root>/<frames|flow>/shard_00001.h5``, as the pipeline names its shards."""
    return root / kind / f"shard_{shard:05d}.h5"


def build_tiny_dataset(root):
    shutil.rmtree(root, ignore_errors=True)  # a build interrupted before `complete` starts again
    videos, manifest = root / "videos", root / "manifest.csv"
    gen = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    coclr("synthesize", "--out", videos, *gen, "--workers", 2)
    coclr("ingest", "--format", "synthetic", "--root", videos, "--videos-per-shard", 20, "--out", manifest)
    for shard in sorted(pd.read_csv(manifest)["shard"].unique()):
        frames, flow = shard_path(root, "frames", shard), shard_path(root, "flow", shard)
        coclr("frames", "--manifest", manifest, "--shard", shard, "--out", frames)
        coclr("flow", "--frames", frames, "--out", flow, "--batch-size", 64, *FAST_FLOW)
