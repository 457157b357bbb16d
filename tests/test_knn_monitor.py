"""The online kNN monitor: DINO's weighted vote, logged at the set epochs, skipped without labels,
and invisible to training (same weights with it, without it, and with shuffled labels)."""

import json
import math
import random

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import coclr
from coclr.clips import ClipReader, usable_videos
from coclr.config import complete_settings
from coclr.ingest import UNLABELLED
from coclr.models import load_model, save_model
from coclr.moco import MoCo
from coclr.shards import frame_store
from coclr.training.knn_monitor import build, weighted_knn_top1

ARCH = {"width": 0.125, "depth": 3}
SETTINGS = complete_settings({
    "model": {**ARCH, "flow_channels": 2},
    "clip": {"frames": 4, "stride": 1, "size": 32, "crop_area": [0.6, 1.0], "eval_stride": 6},
    "moco": {"queue_size": 16, "momentum": 0.99, "temperature": 0.07, "dim": 16},
    "optim": {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 8},
    "infonce": {"epochs": 4, "lr_steps": []},
    "knn_monitor": {"every": 2, "bank_videos": 20, "query_videos": 10},
    "resources": {"threads": 1, "workers": 0, "checkpoint_minutes": 10},
})


def at_cosine(similarities, dim=4):
    """Unit rows whose cosine similarity with the first axis is each of ``similarities``."""
    rows = torch.zeros(len(similarities), dim)
    for i, s in enumerate(similarities):
        rows[i, 0], rows[i, 1 + i % (dim - 1)] = s, math.sqrt(1 - s * s)
    return rows


def test_the_vote_sums_exp_similarity_over_temperature_per_class():
    query, label = torch.eye(4)[:1], torch.tensor([0])
    # One class-0 neighbour at 0.90 against two class-1 ones: exp(0.90 / 0.07) beats 2 exp(0.85 / 0.07) ...
    bank, labels = at_cosine([0.90, 0.85, 0.85]), torch.tensor([0, 1, 1])
    assert weighted_knn_top1(bank, labels, query, label) == 1.0  # a plain majority would say class 1
    # ... but not 2 exp(0.88 / 0.07).
    assert weighted_knn_top1(at_cosine([0.90, 0.88, 0.88]), labels, query, label) == 0.0  # nearest alone: class 0
    # Only the k nearest vote: with k = 1 the single nearest decides.
    assert weighted_knn_top1(at_cosine([0.90, 0.88, 0.88]), labels, query, label, k=1) == 1.0
    # Cosine, not dot product: a longer vector is no nearer; a bank smaller than k is all of it.
    far = at_cosine([0.5, 0.9]) * torch.tensor([[100.0], [1.0]])
    assert weighted_knn_top1(far, torch.tensor([0, 1]), query, torch.tensor([1])) == 1.0


def pretrain(tiny_dataset, tmp_path, name, settings, manifest=None):
    """An RGB InfoNCE stage on the tiny set; its run directory."""
    coclr("pretrain", "--view", "rgb", "--loss", "infonce", "--manifest", manifest or tiny_dataset["manifest"],
          "--frames", *tiny_dataset["frames"], "--run-dir", tmp_path / name, "--out", tmp_path / f"{name}.pt",
          "--settings", json.dumps(settings))
    return tmp_path / name


def with_monitor(every):
    return {**SETTINGS, "knn_monitor": {**SETTINGS["knn_monitor"], "every": every}}


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """The same stage with the monitor every 2 epochs, without it, and with the training labels shuffled."""
    tmp_path = tmp_path_factory.mktemp("knn")
    manifest = pd.read_csv(tiny_dataset["manifest"])
    train = manifest["split"] == "train"
    manifest.loc[train, "label"] = manifest.loc[train, "label"].sample(frac=1, random_state=3).to_numpy()
    manifest.to_csv(tmp_path / "shuffled.csv", index=False)
    return {"monitored": pretrain(tiny_dataset, tmp_path, "monitored", with_monitor(2)),
            "off": pretrain(tiny_dataset, tmp_path, "off", with_monitor(0)),
            "shuffled": pretrain(tiny_dataset, tmp_path, "shuffled", with_monitor(2), tmp_path / "shuffled.csv")}


def test_knn_top1_is_logged_at_the_set_epochs_only(runs):
    metrics = pd.read_csv(runs["monitored"] / "metrics.csv")
    assert list(metrics.epoch) == [1, 2, 3, 4]
    measured = metrics.set_index("epoch")["knn_top1"]
    assert measured[[1, 3]].isna().all()  # an empty cell: not measured at that epoch
    assert measured[[2, 4]].between(0, 1).all()
    events = EventAccumulator(str(runs["monitored"] / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("knn_top1")] == [2, 4]
    assert "knn_top1" not in pd.read_csv(runs["off"] / "metrics.csv")


def test_labels_and_the_monitor_do_not_reach_the_weights(runs):
    """Bit-identical models with the monitor, without it, and with shuffled labels (the monitor's own
    numbers do use them): the monitor restores the RNG states, so the epochs after it draw the same."""
    models = {name: load_model(run.with_suffix(".pt"))["state_dict"] for name, run in runs.items()}
    for name in ("off", "shuffled"):
        assert models[name].keys() == models["monitored"].keys()
        for key, value in models["monitored"].items():
            if key != "queue_label":  # the labels the queue remembers (UberNCE's positives), not weights
                assert torch.equal(value, models[name][key]), f"{name}: {key}"
    shuffled = pd.read_csv(runs["shuffled"] / "metrics.csv")
    assert shuffled["knn_top1"].notna().sum() == 2


def test_a_coclr_stage_logs_it_for_its_view_and_trains_the_same(tiny_dataset, tmp_path):
    """The flow stage of a cycle, mined by RGB, with the monitor every epoch and without it."""
    for view, seed in (("rgb", 1), ("flow", 2)):
        torch.manual_seed(seed)
        arch = {**ARCH, "in_channels": 3 if view == "rgb" else 2}
        save_model(tmp_path / f"{view}.pt", MoCo(arch, dim=16, queue_size=16).state_dict(), view, arch)
    settings = {**SETTINGS, "cotrain": {**SETTINGS["cotrain"], "epochs": 2, "topk": 2}}
    weights, metrics = {}, {}
    for every in (1, 0):
        run_dir = tmp_path / f"every{every}"
        coclr("cotrain", "--view", "flow", "--init", tmp_path / "flow.pt", "--miner", tmp_path / "rgb.pt",
              "--manifest", tiny_dataset["manifest"], "--frames", *tiny_dataset["frames"], "--flow",
              *tiny_dataset["flow"], "--run-dir", run_dir, "--out", run_dir.with_suffix(".pt"),
              "--settings", json.dumps({**settings, "knn_monitor": {**SETTINGS["knn_monitor"], "every": every}}))
        weights[every] = load_model(run_dir.with_suffix(".pt"))["state_dict"]
        metrics[every] = pd.read_csv(run_dir / "metrics.csv")
    assert metrics[1]["knn_top1"].between(0, 1).all() and len(metrics[1]) == 2
    assert "knn_top1" not in metrics[0]
    assert all(torch.equal(value, weights[0][key]) for key, value in weights[1].items())
    first = "encoder_q.0.Conv_1a.conv1.weight"
    assert not torch.equal(load_model(tmp_path / "flow.pt")["state_dict"][first], weights[1][first])  # it trained


def test_unlabelled_videos_skip_the_monitor_with_one_line(tiny_dataset, tmp_path):
    manifest = pd.read_csv(tiny_dataset["manifest"]).assign(label=UNLABELLED)
    manifest.to_csv(tmp_path / "unlabelled.csv", index=False)
    settings = {**with_monitor(1), "infonce": {"epochs": 2, "lr_steps": []}}
    result = coclr("pretrain", "--view", "rgb", "--loss", "infonce", "--manifest", tmp_path / "unlabelled.csv",
                   "--frames", *tiny_dataset["frames"], "--run-dir", tmp_path / "run", "--out", tmp_path / "out.pt",
                   "--settings", json.dumps(settings))
    assert result.stderr.count("kNN monitor") == 1
    assert "kNN monitor off: the training videos are unlabelled" in result.stderr
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics.epoch) == [1, 2] and "knn_top1" not in metrics


def test_the_monitor_leaves_rng_modes_and_batch_norm_as_it_found_them(tiny_dataset):
    store = frame_store(tiny_dataset["frames"])
    videos = usable_videos(pd.read_csv(tiny_dataset["manifest"]), "train", [store])
    torch.manual_seed(0)
    model = MoCo({**ARCH, "in_channels": 3}, dim=16, queue_size=16).train()
    model.encoder_q[0][0].eval()  # a mixed state: each module's own mode must come back
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monitor = build(model.encoder_q[0], videos, ClipReader(frames=store), SETTINGS, "rgb", 3, seed=0)
    random.seed(1)
    python, cpu = random.getstate(), torch.get_rng_state()
    metrics = {"epoch": 2}
    monitor(metrics)
    assert 0 <= metrics["knn_top1"] <= 1
    assert len(monitor.bank) == 20 and len(monitor.queries) == 10
    assert set(monitor.bank.group).isdisjoint(monitor.queries.group)  # whole groups held out
    assert random.getstate() == python and torch.equal(torch.get_rng_state(), cpu)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in before.items())  # BN statistics too
    metrics = {"epoch": 3}
    monitor(metrics)
    assert metrics == {"epoch": 3}  # not a set epoch: nothing measured
