"""CoCLR stages: what is trained, what is frozen, when steps start, resume and mining purity."""

import json
import os
import random
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from coclr.augment import RandomColour
from coclr.batch import collate
from coclr.clips import ClipReader, TwoClipDataset, usable_videos
from coclr.config import complete_settings
from coclr.training.cotrain import cotrain_step, load_miner
from coclr.models import load_model, save_model
from coclr.moco import MoCo
from coclr.shards import DecodedInMemory, flow_store, frame_store, in_memory
from coclr.training.sampler import resumable_loader
from coclr.training.trainer import Preempted, Trainer
from conftest import coclr

ARCH = {"width": 0.125, "depth": 3}
SETTINGS = complete_settings({
    "model": {**ARCH, "flow_channels": 2},
    "clip": {"frames": 4, "stride": 1, "size": 32, "crop_area": [0.6, 1.0]},
    "moco": {"queue_size": 16, "momentum": 0.99, "temperature": 0.07, "dim": 16},
    "optim": {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 8},
    "infonce": {"epochs": 1, "lr_steps": []},
    "cotrain": {"epochs": 3, "lr_steps": [], "topk": 2, "self_drop": 0.9},
    "resources": {"threads": 1, "workers": 0, "checkpoint_minutes": 10},
})


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = lambda: torch.randint(0, 256, (n, 4, 3, 32, 32), generator=g, dtype=torch.uint8)  # noqa: E731
    flow = lambda: torch.randn(n, 2, 4, 32, 32, generator=g)  # noqa: E731
    return {"query": {"rgb": rgb(), "flow": flow()}, "key": {"rgb": rgb(), "flow": flow()},
            "label": torch.arange(n) % 2, "group": torch.arange(n), "index": torch.arange(n)}


def make_stage(tmp_path, labelled=True):
    """A fresh RGB MoCo, a frozen flow miner loaded from a checkpoint file, and the CoCLR step."""
    torch.manual_seed(0)
    flow_model = MoCo({**ARCH, "in_channels": 2}, dim=16, queue_size=16)
    save_model(tmp_path / "flow.pt", flow_model.state_dict(), "flow", {**ARCH, "in_channels": 2})
    miner = load_miner(tmp_path / "flow.pt", "flow", torch.device("cpu"))
    model = MoCo({**ARCH, "in_channels": 3}, dim=16, queue_size=8, other_view_dim=miner.dim)
    step = cotrain_step(model, miner, "rgb", SETTINGS["cotrain"], torch.device("cpu"), torch.Generator(),
                        RandomColour.from_settings(SETTINGS["clip"]), labelled)
    return model, miner, step


@pytest.fixture
def stage(tmp_path):
    return make_stage(tmp_path)


def test_gradients_reach_only_the_trained_view(stage):
    model, miner, step = stage
    for _ in range(2):
        step(batch())  # fill the queue (8 slots, 4 keys a step)
    step(batch(seed=1)).loss.backward()
    assert all(p.grad is not None for p in model.encoder_q.parameters())
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert all(not p.requires_grad and p.grad is None for p in miner.parameters())
    assert not miner.training


def test_no_optimiser_step_until_the_queue_holds_only_real_keys(stage):
    model, _, step = stage
    assert not step(batch()).update  # 4 of 8 slots real
    assert not step(batch(seed=1)).update  # the step that fills the queue still waits
    result = step(batch(seed=2))
    assert result.update and result.stats["mining_purity"] == result.stats["mining_purity"]  # measured now
    assert (model.queue_other_view.abs().sum(0) > 0).all()  # miner embeddings stored beside the keys


def run_stage(tiny_dataset, tmp_path, init, miner, epochs, view="rgb"):
    settings = json.loads(json.dumps(SETTINGS))
    settings["cotrain"]["epochs"] = epochs
    return subprocess.run(
        [sys.executable, "-m", "coclr", "cotrain", "--view", view, "--init", init, "--miner", miner,
         "--manifest", tiny_dataset["manifest"], "--frames", *tiny_dataset["frames"], "--flow", *tiny_dataset["flow"],
         "--run-dir", tmp_path / "run", "--out", tmp_path / f"coclr_{view}.pt", "--settings", json.dumps(settings)],
        capture_output=True, text=True)


def test_a_stage_runs_resumes_and_mines_above_chance(tiny_dataset, tmp_path):
    settings = json.dumps(SETTINGS)
    # Single-view stages get only their view's shards (the workflow declares no more).
    coclr("pretrain", "--view", "rgb", "--loss", "infonce", "--run-dir", tmp_path / "init_rgb",
          "--out", tmp_path / "infonce_rgb.pt", "--manifest", tiny_dataset["manifest"],
          "--frames", *tiny_dataset["frames"], "--settings", settings)
    # A class-aware miner (the UberNCE oracle) must give class-pure positives: this checks the mining path.
    oracle = json.loads(settings)
    oracle["ubernce"] = {"epochs": 6, "lr_steps": []}
    coclr("pretrain", "--view", "flow", "--loss", "ubernce", "--run-dir", tmp_path / "oracle_flow",
          "--out", tmp_path / "ubernce_flow.pt", "--manifest", tiny_dataset["manifest"],
          "--flow", *tiny_dataset["flow"], "--settings", json.dumps(oracle))
    miner = tmp_path / "ubernce_flow.pt"
    miner_before = load_model(miner)["state_dict"]

    first = run_stage(tiny_dataset, tmp_path, tmp_path / "infonce_rgb.pt", miner, epochs=2)
    assert first.returncode == 0, first.stderr
    second = run_stage(tiny_dataset, tmp_path, tmp_path / "infonce_rgb.pt", miner, epochs=4)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stderr and "at epoch 2" in second.stderr

    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics.epoch) == [1, 2, 3, 4]
    assert metrics.mining_purity.mean() > metrics.mining_chance.mean()  # the level of random candidates
    miner_after = load_model(miner)["state_dict"]
    assert all(torch.equal(miner_before[k], miner_after[k]) for k in miner_before)  # the miner is never written
    assert load_model(tmp_path / "coclr_rgb.pt")["meta"]["epochs"] == 4


def test_unlabelled_videos_train_with_purity_left_unmeasured(tmp_path):
    """Labels of -1 (folder format, no labels) would make every mined positive "pure": NaN instead."""
    _, _, step = make_stage(tmp_path, labelled=False)
    for seed in range(3):
        result = step({**batch(seed=seed), "label": torch.full((4,), -1)})
    assert result.update and torch.isfinite(result.loss)
    assert result.stats["mining_purity"] != result.stats["mining_purity"]  # NaN
    assert result.stats["mining_chance"] != result.stats["mining_chance"]


@pytest.mark.parametrize("view, given, missing", [("rgb", "flow", "--frames"), ("flow", "frames", "--flow")])
def test_a_single_view_stage_names_the_shards_it_lacks(tiny_dataset, tmp_path, view, given, missing):
    result = subprocess.run(
        [sys.executable, "-m", "coclr", "pretrain", "--view", view, "--manifest", tiny_dataset["manifest"],
         f"--{given}", *tiny_dataset[given], "--run-dir", tmp_path / "run", "--out", tmp_path / "out.pt",
         "--settings", json.dumps(SETTINGS)], capture_output=True, text=True)
    assert result.returncode != 0 and f"the {view} view needs" in result.stderr and f"pass {missing}" in result.stderr
    assert not (tmp_path / "out.pt").exists()


def reference_stage(tiny_dataset, run_dir, miner_path, stop_at=None, memory=False):
    """A CoCLR RGB stage with the reference augmentation (the schema's defaults: one-window pairs,
    base/null colour, colour on flow, channel grey, one-try crop, bicubic) for 2 epochs;
    SIGTERM (preemption) after step ``stop_at``; with ``memory``, the videos decoded in memory."""
    torch.manual_seed(0)
    random.seed(0)
    settings = complete_settings({**SETTINGS, "clip": {"frames": 4, "size": 32}})
    assert settings["clip"]["colour_views"] == "reference" and settings["clip"]["flow_colour"]
    stores = [frame_store(tiny_dataset["frames"]), flow_store(tiny_dataset["flow"])]
    videos = usable_videos(pd.read_csv(tiny_dataset["manifest"]), "train", stores)
    if memory:
        stores = [in_memory(store, videos["video_id"], 64, kind) for store, kind in zip(stores, ("frames", "flow"))]
        assert all(isinstance(store, DecodedInMemory) for store in stores)
    data = resumable_loader(TwoClipDataset(videos, ClipReader(*stores), settings["clip"]), 8, seed=5, collate=collate)
    miner = load_miner(miner_path, "flow", torch.device("cpu"))
    model = MoCo({**ARCH, "in_channels": 3}, dim=16, queue_size=8, other_view_dim=miner.dim)
    generator = torch.Generator().manual_seed(5)
    trainer = Trainer(model, run_dir, settings, 2, generators={"mining": generator})
    inner = cotrain_step(model, miner, "rgb", settings["cotrain"], torch.device("cpu"), generator,
                         RandomColour.from_settings(settings["clip"]))
    calls = {"n": 0}

    def step(batch):
        calls["n"] += 1
        if calls["n"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer saves after this step and exits
        return inner(batch)

    trainer.fit(data, step)
    return model


def test_the_reference_augmentation_resumes_bit_for_bit(tiny_dataset, tmp_path):
    torch.manual_seed(1)
    flow = MoCo({**ARCH, "in_channels": 2}, dim=16, queue_size=16)
    save_model(tmp_path / "flow.pt", flow.state_dict(), "flow", {**ARCH, "in_channels": 2})
    uninterrupted = reference_stage(tiny_dataset, tmp_path / "whole", tmp_path / "flow.pt")
    with pytest.raises(Preempted):
        reference_stage(tiny_dataset, tmp_path / "stopped", tmp_path / "flow.pt", stop_at=5)  # mid-epoch 2
    resumed = reference_stage(tiny_dataset, tmp_path / "stopped", tmp_path / "flow.pt")
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_videos_decoded_in_memory_train_the_same_model_as_the_shards(tiny_dataset, tmp_path):
    torch.manual_seed(1)
    flow = MoCo({**ARCH, "in_channels": 2}, dim=16, queue_size=16)
    save_model(tmp_path / "flow.pt", flow.state_dict(), "flow", {**ARCH, "in_channels": 2})
    shards = reference_stage(tiny_dataset, tmp_path / "shards", tmp_path / "flow.pt")
    memory = reference_stage(tiny_dataset, tmp_path / "memory", tmp_path / "flow.pt", memory=True)
    for name, value in shards.state_dict().items():
        assert torch.equal(value, memory.state_dict()[name]), name
