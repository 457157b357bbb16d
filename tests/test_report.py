"""Report figures: each one, drawn from small hand-made pipeline outputs, is a PNG (the table an HTML table)."""

import numpy as np
import pandas as pd
import pytest
import torch

from coclr import report
from coclr.shards import create_shard, encode_jpegs, write_video
from coclr.evaluation.features import FORMAT
from coclr.flow.quantise import encode_field, quantise
from conftest import coclr

CLASSES = ["Jump", "Run", "Swim"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_SIGNATURE


def video_ids(split, per_class):
    return [f"{name}/v_{name}_{split}{i}" for name in CLASSES for i in range(per_class)]


@pytest.fixture
def metrics(tmp_path):
    """metrics.csv of an InfoNCE and a CoCLR stage per view, laid out as the trainer writes them."""
    paths = []
    for stage in ("infonce_rgb", "infonce_flow", "coclr_c1_rgb", "coclr_c1_flow"):
        table = pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0, 2.5, 2.2], "instance_acc": [0.2, 0.4, 0.5],
                              "lr": 1e-3, "clips_per_s": 50.0})
        if stage.startswith("coclr"):
            table["mining_purity"] = [0.3, 0.4, 0.5]
        path = tmp_path / "runs" / stage / "metrics.csv"
        path.parent.mkdir(parents=True)
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


def features_file(path, method, view, dim=8):
    """A features file as `coclr features` writes it: train/test features of 4 videos per class (test: 3)."""
    torch.manual_seed(len(method) + len(view))
    splits = {}
    for split, per_class in (("train", 4), ("test", 3)):
        labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)
        features = torch.randn(len(labels), dim) + 3 * torch.nn.functional.one_hot(labels, dim)
        splits[split] = {"features": features, "labels": labels, "video_ids": video_ids(split, per_class)}
    torch.save({"format": FORMAT, "method": method, "view": view, "checkpoint": None, **splits}, path)
    return path


@pytest.fixture
def shards(tmp_path):
    """A frame shard and its flow shard (documented HDF5 layout) of every video, and a manifest."""
    rng = np.random.default_rng(0)
    ids = video_ids("train", 4) + video_ids("test", 3)
    frames_path, flow_path = tmp_path / "frames.h5", tmp_path / "flow.h5"
    with create_shard(frames_path) as frames, create_shard(flow_path) as flow:
        for video_id in ids:
            for f, elements in ((frames, encode_jpegs(rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8), 90)),
                                (flow, [encode_field(quantise(rng.normal(0, 3, (24, 24, 2)))) for _ in range(4)])):
                write_video(f, video_id, elements)
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"video_id": ids, "class_name": [v.split("/")[0] for v in ids]}).to_csv(manifest, index=False)
    return {"frames": [frames_path], "flow": [flow_path], "manifest": manifest}


def test_training_curves_and_mining_purity(metrics, tmp_path):
    report.curves(metrics, tmp_path / "curves.png")
    report.purity([p for p in metrics if "coclr" in str(p)], tmp_path / "purity.png")
    assert is_png(tmp_path / "curves.png") and is_png(tmp_path / "purity.png")


def test_tsne_has_a_panel_per_method_and_view(tmp_path):
    paths = [features_file(tmp_path / f"{m}_{v}.pt", m, v) for m in ("infonce", "coclr_c1") for v in ("rgb", "flow")]
    report.tsne(paths, tmp_path / "tsne.png")
    assert is_png(tmp_path / "tsne.png")


def test_retrieval_grid_through_the_command_line(shards, tmp_path):
    paths = [features_file(tmp_path / f"{m}_rgb.pt", m, "rgb") for m in ("coclr_c1", "infonce")]
    out = tmp_path / "retrieval.png"
    coclr("report-figures", "retrieval", "--features", *paths, "--frames", *shards["frames"],
          "--manifest", shards["manifest"], "--queries", 2, "--out", out)
    assert is_png(out)


def test_flow_figure(shards, tmp_path):
    report.flow(shards["frames"], shards["flow"], tmp_path / "flow.png", videos=2)
    assert is_png(tmp_path / "flow.png")


def test_ablation_table_as_html():
    ablation = {"tasks": ["linear_probe"], "rows": [
        {"title": "InfoNCE", "linear_probe": {"rgb": 46.83, "flow": 60.0, "two_stream": None}}]}
    html = report.ablation_html(ablation)
    assert "<table" in html and "linear probe top-1, RGB" in html
    assert "<td>46.8</td>" in html and "<td>-</td>" in html
