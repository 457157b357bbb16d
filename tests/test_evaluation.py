"""Evaluation: probe, selection on training data only, retrieval, two-stream, features, ablation table."""

import csv
import itertools
import json
import statistics
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from coclr.augment import RGB_MEAN, RGB_STD
from coclr.cli import main
from coclr.clips import ClipReader
from coclr.config import complete_settings
from coclr.errors import CoclrError
from coclr.shards import create_shard, encode_jpegs, frame_store, write_video
from coclr.evaluation import features, linear_probe, retrieval
from coclr.evaluation.common import TenCropClips, fuse_probabilities, holdout_split, per_video_mean, save_probabilities
from coclr.evaluation.records import FIELDS, KEYS, result_record
from coclr.models import Encoder, build_backbone, save_model

PROBE = {"epochs": 15, "lr": [1e-2, 1e-3], "weight_decay": [1e-5], "batch_size": 32, "holdout": 0.2}
CLIP = complete_settings({"clip": {"frames": 4, "stride": 1, "size": 16, "crop_area": [0.6, 1.0], "eval_stride": 2,
                                   "eval_pooling": "mean"}})["clip"]
ARCH = {"in_channels": 3, "width": 0.25, "depth": 3}
RECORD_KEYS = {*KEYS, *FIELDS}


def blobs(classes=5, per_class=40, dim=16, seed=0, spread=0.3):
    """Separable features: one well-separated centre per class; 4 videos per group."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    labels = torch.arange(classes).repeat_interleave(per_class)
    x = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    groups = [f"{int(label)}_g{i // 4}" for i, label in enumerate(labels)]
    return x, labels, groups


def features_file(path, train, test, classes, method="infonce", view="rgb"):
    """A features file as `coclr features` writes it, from (features, labels, groups) triples."""
    def split(x, labels, groups, prefix):
        return {"features": x, "labels": labels, "groups": groups, "windows": len(x),
                "video_ids": [f"{prefix}{i}" for i in range(len(x))]}

    torch.save({"format": features.FORMAT, "method": method, "view": view, "checkpoint": None, "arch": ARCH,
                "settings": {"clip": CLIP}, "num_classes": classes, "train": split(*train, "tr"),
                "test": split(*test, "te")}, path)
    return str(path)


# -- linear probe --------------------------------------------------------------------------

def test_probe_reaches_full_accuracy_on_separable_features():
    x, y, groups = blobs(seed=0)
    x_test, y_test, _ = blobs(seed=0, per_class=10)
    probs, selection = linear_probe.probe_features({"features": x, "labels": y, "groups": groups}, x_test, 5, PROBE)
    assert (probs.argmax(1) == y_test).float().mean() == 1.0
    assert selection["holdout_top1"] == 100.0 and 1 <= selection["epochs"] <= PROBE["epochs"]


def test_holdout_is_stratified_and_keeps_groups_whole():
    labels = np.repeat(np.arange(3), 20)
    groups = [f"{label}_{i // 5}" for i, label in enumerate(labels)]
    fit, held = holdout_split(labels, groups, 0.2, seed=1)
    assert sorted(fit.tolist() + held.tolist()) == list(range(60))
    assert np.bincount(labels[held], minlength=3).tolist() == [5, 5, 5]  # one whole group per class
    assert not {groups[i] for i in held} & {groups[i] for i in fit}


def test_selection_never_reads_test_labels(tmp_path):
    """Scrambled test labels would change any test-based choice; selection and predictions stay the same."""
    train = blobs(seed=1, spread=2.0)  # overlapping classes: the choice of lr and epoch matters
    x_test, y_test, g_test = blobs(seed=1, per_class=10, spread=2.0)
    scrambled = (y_test + torch.randint(1, 5, y_test.shape)) % 5
    settings = json.dumps(complete_settings({"linear_probe": PROBE}))
    outputs = []
    for name, labels in (("true", y_test), ("scrambled", scrambled)):
        feats = features_file(tmp_path / f"{name}.pt", train, (x_test, labels, g_test), classes=5)
        out, probs = tmp_path / f"{name}.json", tmp_path / f"{name}_probs.pt"
        main(["linear-probe", "--features", feats, "--out", str(out), "--probs", str(probs), "--settings", settings])
        outputs.append((json.loads(out.read_text()), torch.load(probs, weights_only=True)["probs"]))
    (true, true_probs), (scrambled_run, scrambled_probs) = outputs
    assert true["selection"] == scrambled_run["selection"]
    assert true["probe_epochs"] == true["selection"]["epochs"] and 1 <= true["probe_epochs"] <= PROBE["epochs"]
    assert set(true) <= RECORD_KEYS and "epochs" not in true
    assert torch.equal(true_probs, scrambled_probs)
    assert true["metrics"]["top1"] != scrambled_run["metrics"]["top1"]


# -- retrieval -----------------------------------------------------------------------------

GALLERY = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # classes 0, 1, 2, 3
GALLERY_LABELS = torch.tensor([0, 1, 2, 3])
QUERY_LABELS = torch.tensor([2, 3])


def test_recall_at_k_by_hand():
    # Query 0 ranks the gallery 0, 2, 3, 1 (its class 2 comes 2nd); query 1 ranks 1, 3, 2, 0 (class 3 2nd).
    query = torch.tensor([[1.0, 0.2], [-1.0, -0.2]])
    shifted = GALLERY + torch.tensor([5.0, -3.0])  # each set is centred on its own mean: no effect
    sim = retrieval.similarity(query, shifted)
    assert retrieval.recall_at_k(sim, QUERY_LABELS, GALLERY_LABELS, ks=(1, 2, 4)) == {"R@1": 0.0, "R@2": 100.0,
                                                                                      "R@4": 100.0}


def test_two_stream_retrieval_sums_similarities(tmp_path):
    rgb_query = torch.tensor([[1.0, 0.2], [-1.0, -0.2]])  # alone: R@1 0 (see above)
    flow_query = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # alone: both right
    # Sum, query 0: gallery 0 scores 0.98 + 0, gallery 2 0.20 + 1 -> class 2 first; query 1 likewise.
    groups = ["a"] * 4
    rgb = features_file(tmp_path / "rgb.pt", (GALLERY, GALLERY_LABELS, groups), (rgb_query, QUERY_LABELS, groups[:2]),
                        4, view="rgb")
    flow = features_file(tmp_path / "flow.pt", (GALLERY, GALLERY_LABELS, groups),
                         (flow_query, QUERY_LABELS, groups[:2]), 4, view="flow")
    out = tmp_path / "r.json"
    main(["retrieval", "--features", rgb, flow, "--out", str(out), "--ks", "1", "2"])
    result = json.loads(out.read_text())
    assert result["view"] == "two_stream" and result["metrics"] == {"R@1": 100.0, "R@2": 100.0}
    assert result["pretraining_epochs"] == [0, 0] and result["queries"] == 2 and result["gallery"] == 4  # random init
    assert set(result) <= RECORD_KEYS
    main(["retrieval", "--features", rgb, "--out", str(out), "--ks", "1", "2"])
    assert json.loads(out.read_text())["metrics"] == {"R@1": 0.0, "R@2": 100.0}


# -- two-stream classification -------------------------------------------------------------

def test_two_stream_averages_probabilities(tmp_path):
    labels = torch.tensor([0, 1, 2])
    rgb = torch.tensor([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.0, 0.5, 0.5]])  # top-1: 1 of 3 (ties go to class 1)
    flow = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # top-1: 2 of 3
    # Mean: video 0 -> class 1 (0.7 > 0.3): wrong; video 1 -> class 1: right; video 2 -> class 2: right.
    ids = ["a", "b", "c"]
    for name, probs in (("rgb", rgb), ("flow", flow)):
        record = {"method": "coclr_c2", "view": name, "checkpoints": [{"path": f"{name}.pt", "sha256": name}]}
        save_probabilities(tmp_path / f"{name}.pt", probs, labels, ids, record)
    fused = fuse_probabilities(tmp_path / "rgb.pt", tmp_path / "flow.pt", task="linear_probe")
    assert fused["view"] == "two_stream" and fused["method"] == "coclr_c2"
    assert fused["metrics"]["top1"] == pytest.approx(200 / 3)
    assert [c["sha256"] for c in fused["checkpoints"]] == ["rgb", "flow"]
    assert fused["inputs"]["flow"]["view"] == "flow" and fused["test_videos"] == 3 and set(fused) <= RECORD_KEYS
    save_probabilities(tmp_path / "other.pt", flow, labels, ["a", "b", "x"], {})
    with pytest.raises(CoclrError, match="cover different test videos"):
        fuse_probabilities(tmp_path / "rgb.pt", tmp_path / "other.pt", task="linear_probe")


# -- features over dense windows -----------------------------------------------------------

GREYS = {"A/v_A_g01_c01": [10, 50, 90, 130, 170, 210, 250, 30], "A/v_A_g02_c01": [60, 60, 60, 60],
         "B/v_B_g01_c01": [200, 100, 0, 40, 80], "B/v_B_g02_c01": [5, 250, 5, 250, 5, 250]}


@pytest.fixture()
def shard(tmp_path):
    """A frame shard with grey frames (one grey level per frame), and its manifest."""
    path = tmp_path / "shard_00000.h5"
    with create_shard(path) as f:
        for video_id, greys in GREYS.items():
            frames = np.stack([np.full((12, 16, 3), g, np.uint8) for g in greys])
            write_video(f, video_id, encode_jpegs(frames, 95))
    rows = [{"video_id": v, "label": int(v[0] == "B"), "split": split, "group": v[:-4]}
            for v in GREYS for split in ("train", "test")]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return path, manifest


def expected_mean(greys, frames=4, step=2):
    """Mean over windows (starts 0, step, ...) of the mean normalised grey level, per channel."""
    starts = range(0, len(greys) - frames + 1, step)
    level = np.mean([np.mean(greys[s:s + frames]) for s in starts]) / 255
    return (level - np.array(RGB_MEAN)) / np.array(RGB_STD)


def test_features_average_dense_windows_per_video(shard):
    path, manifest = shard
    videos = pd.read_csv(manifest).query("split == 'train'").reset_index(drop=True)
    reader = ClipReader(frames=frame_store([path]))
    out = features.extract(nn.Identity(), videos, reader, CLIP, "rgb", 2)  # identity "backbone": pooled input
    assert out["video_ids"] == list(GREYS) and out["labels"].tolist() == [0, 0, 1, 1]
    assert out["windows"] == 3 + 1 + 1 + 2  # 8 frames: starts 0, 2, 4; 4 and 5 frames: 0; 6 frames: 0, 2
    for row, greys in zip(out["features"], GREYS.values()):
        np.testing.assert_allclose(row.numpy(), expected_mean(greys), atol=0.03)
    crops = TenCropClips(videos, reader, CLIP, flow_channels=2)
    ten = per_video_mean(lambda clips: clips.mean(dim=(2, 3, 4)), crops, "rgb", 2)
    assert crops[0]["rgb"].shape == (10, 4, 3, 16, 16)  # uint8 (crops, T, C, H, W)
    torch.testing.assert_close(ten, out["features"], atol=0.03, rtol=0)  # uniform frames: every crop alike
    # The authors' pooling, from the same pass: each window's feature normalised, then averaged.
    assert out["pooled"]["mean"] is out["features"]
    normalised = out["pooled"]["normalised_mean"]
    for row, greys in zip(normalised, GREYS.values()):
        starts = range(0, len(greys) - 4 + 1, 2)
        windows = [(np.mean(greys[s:s + 4]) / 255 - np.array(RGB_MEAN)) / np.array(RGB_STD) for s in starts]
        expected = np.mean([w / np.linalg.norm(w) for w in windows], axis=0)
        np.testing.assert_allclose(row.numpy(), expected, atol=0.03)
    authors = features.extract(nn.Identity(), videos, reader, {**CLIP, "eval_pooling": "normalised_mean"}, "rgb", 2)
    torch.testing.assert_close(authors["features"], normalised)


def test_features_and_finetune_entry_points(shard, tmp_path, capsys):
    path, manifest = shard
    settings = complete_settings({
        "model": {"width": 0.25, "depth": 3, "flow_channels": 2}, "clip": CLIP, "optim": {"weight_decay": 1e-5},
        "resources": {"threads": 1, "workers": 0, "checkpoint_minutes": 10},
        "finetune": {"epochs": 2, "lr_steps": [1], "lr": 1e-3, "dropout": 0.9, "batch_size": 2, "holdout": 0.5}})
    common = ["--manifest", str(manifest), "--frames", str(path), "--settings", json.dumps(settings)]
    main(["features", "--view", "rgb", "--random", "--out", str(tmp_path / "random_rgb.pt"), *common])
    data = torch.load(tmp_path / "random_rgb.pt", weights_only=True)
    assert data["method"] == "random" and data["checkpoint"] is None
    assert data["train"]["features"].shape == (4, build_backbone(ARCH).out_dim)

    model = tmp_path / "coclr_c1_rgb.pt"
    save_model(model, Encoder(build_backbone(ARCH)).state_dict(), "rgb", ARCH, {"epochs": 3})
    out, probs, run_dir = tmp_path / "ft.json", tmp_path / "ft_probs.pt", tmp_path / "ft_run"
    finetune = ["finetune", "--checkpoint", str(model), "--out", str(out), "--probs", str(probs),
                "--run-dir", str(run_dir)]
    main([*finetune, *common])
    result = json.loads(out.read_text())
    assert result["method"] == "coclr_c1" and result["trained_epochs"] == 2 and set(result) <= RECORD_KEYS
    curve = result["selection"]["holdout_top1"]
    assert result["chosen_epoch"] == result["selection"]["epochs"] == curve.index(max(curve)) + 1
    assert result["checkpoints"][0]["meta"] == {"epochs": 3}
    assert result["selection"]["holdout_videos"] == 2 and len(result["selection"]["holdout_top1"]) == 2
    assert torch.load(probs, weights_only=True)["probs"].shape == (4, 2)
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["holdout_top1"] == max(result["selection"]["holdout_top1"])

    # A longer schedule resumes from the saved state: only the third epoch runs.
    settings["finetune"]["epochs"] = 3
    capsys.readouterr()
    main([*finetune, "--manifest", str(manifest), "--frames", str(path), "--settings", json.dumps(settings)])
    assert "at epoch 2" in capsys.readouterr().err
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert [float(row["lr"]) for row in rows] == pytest.approx([1e-3, 1e-4, 1e-4])  # finetune.lr_steps
    assert len(json.loads(out.read_text())["selection"]["holdout_top1"]) == 3


# -- ablation table ------------------------------------------------------------------------

def fake_run(task, method, view, value):
    metric = "R@1" if task == "retrieval" else "top1"
    return result_record(task, method, view, {metric: value},
                         [{"path": f"models/{method}_{view}.pt", "sha256": f"{method}{view}"}], time.time())


def test_records_have_one_schema():
    record = fake_run("finetune", "coclr_c1", "two_stream", 1.0)
    assert list(record) == list(KEYS)
    with pytest.raises(TypeError, match="not keys of a result record: epochs"):
        result_record("finetune", "coclr_c1", "rgb", {}, [], time.time(), epochs=3)
    with pytest.raises(ValueError, match="view must be one of"):
        result_record("retrieval", "coclr_c1", "depth", {}, [], time.time())


def test_ablation_table_from_fake_results(tmp_path):
    methods = ["random", "infonce", "coclr_c1", "coclr_c2", "ubernce"]
    views = ["rgb", "flow", "two_stream"]
    paths = {}
    for task, chosen in (("linear_probe", methods), ("retrieval", methods), ("finetune", ["coclr_c2"])):
        runs = []
        for m, method in enumerate(chosen):
            for v, view in enumerate(views):
                runs.append(tmp_path / f"{task}_{method}_{view}.json")
                runs[-1].write_text(json.dumps(fake_run(task, method, view, 10.0 * m + v)))
        paths[task] = tmp_path / f"{task}.json"
        main(["ablation", "collect", "--runs", *map(str, runs), "--out", str(paths[task])])
    out, md = tmp_path / "ablation.json", tmp_path / "ablation.md"
    main(["ablation", "table", "--linear-probe", str(paths["linear_probe"]), "--retrieval", str(paths["retrieval"]),
          "--finetune", str(paths["finetune"]), "--out", str(out), "--markdown", str(md)])
    table = json.loads(out.read_text())
    assert [row["method"] for row in table["rows"]] == methods
    assert table["rows"][2]["linear_probe"] == {"rgb": 20.0, "flow": 21.0, "two_stream": 22.0}
    assert table["rows"][3]["finetune"] == {"rgb": 0.0, "flow": 1.0, "two_stream": 2.0}
    assert table["rows"][0]["finetune"]["rgb"] is None
    lines = md.read_text().splitlines()
    assert lines[2 + len(methods)] == "" and "linear probe top-1, two-stream" in lines[0]
    assert lines[4] == "| CoCLR, cycle 1 | 20.0 | 21.0 | 22.0 | 20.0 | 21.0 | 22.0 | - | - | - |"
    assert lines[2].startswith("| random init |") and lines[6].startswith("| UberNCE (oracle) |")
    assert len(table["checkpoints"]) == 3 * len(methods)
    # One seed: the claims on it (CoCLR c2 30 vs InfoNCE 10 vs UberNCE 40 on RGB).
    assert table["claims"]["coclr_beats_infonce"]["linear_probe"] == {
        "per_seed": {"0": 20.0}, "mean": 20.0, "min": 20.0, "held": 1, "seeds": 1}
    assert table["claims"]["gap_to_oracle_closed"]["mean"] == pytest.approx(2 / 3)
    assert lines[8].startswith("- CoCLR beats InfoNCE (CoCLR, cycle 2 - InfoNCE, RGB): linear probe top-1 +20.0")
    assert "closes 67 % of the InfoNCE-to-UberNCE gap" in lines[9]


def test_ablation_over_several_splits_reports_each_and_their_mean(tmp_path):
    methods, views = ["infonce", "coclr_c1"], ["rgb", "flow", "two_stream"]
    paths = {}
    for task in ("linear_probe", "retrieval"):
        args = []
        for split, offset in ((1, 0.0), (2, 10.0), (3, 50.0)):
            args += ["--split", str(split), "--runs"]
            for m, method in enumerate(methods):
                for v, view in enumerate(views):
                    run = tmp_path / f"{task}_{split}_{method}_{view}.json"
                    run.write_text(json.dumps(fake_run(task, method, view, offset + 10.0 * m + v)))
                    args.append(str(run))
        paths[task] = tmp_path / f"{task}.json"
        main(["ablation", "collect", *args, "--out", str(paths[task])])
    collected = json.loads(paths["linear_probe"].read_text())
    assert collected["splits"] == [1, 2, 3] and {run["split"] for run in collected["runs"]} == {1, 2, 3}
    assert collected["results"]["coclr_c1"]["flow"]["top1"] == pytest.approx((11.0 + 21.0 + 61.0) / 3)
    out, md = tmp_path / "ablation.json", tmp_path / "ablation.md"
    main(["ablation", "table", "--linear-probe", str(paths["linear_probe"]), "--retrieval", str(paths["retrieval"]),
          "--out", str(out), "--markdown", str(md)])
    table = json.loads(out.read_text())
    assert table["splits"] == [1, 2, 3]
    assert table["rows"][1]["retrieval"]["rgb"] == pytest.approx(30.0)  # (10 + 20 + 60) / 3
    assert table["per_split"]["2"][1]["retrieval"]["rgb"] == 20.0
    text = md.read_text()
    assert text.startswith("Mean over splits 1, 2, 3:") and "Split 3:" in text
    assert "| CoCLR, cycle 1 | 30.0 | 31.0 | 32.0 | 30.0 | 31.0 | 32.0 |" in text
    assert "| CoCLR, cycle 1 | 60.0 | 61.0 | 62.0 | 60.0 | 61.0 | 62.0 |" in text  # split 3


def test_ablation_over_seeds_and_splits_gives_the_mean_its_spread_and_the_claims(tmp_path):
    """Three seeds x two splits: each cell is the mean of the per-seed records (each seed's mean over the
    splits), the spread is their sample standard deviation and range, each seed and split is listed."""
    methods, views = ["infonce", "coclr_c1", "ubernce"], ["rgb", "flow", "two_stream"]
    seed_offset, split_offset = {0: 0.0, 1: 6.0, 2: 30.0}, {1: 0.0, 2: 2.0}
    value = {("infonce", 0): 10.0, ("coclr_c1", 0): 20.0, ("ubernce", 0): 50.0}
    paths = {}
    for task in ("linear_probe", "retrieval"):
        args = []
        for seed, split in itertools.product(seed_offset, split_offset):
            args += ["--seed", str(seed), "--split", str(split), "--runs"]
            for method, view in itertools.product(methods, views):
                run = tmp_path / f"{task}_{seed}_{split}_{method}_{view}.json"
                # InfoNCE does not move with the seed, so CoCLR's lead grows with it.
                moved = 0.0 if method == "infonce" else seed_offset[seed]
                run.write_text(json.dumps(fake_run(task, method, view, value[method, 0] + moved + split_offset[split])))
                args.append(str(run))
        paths[task] = tmp_path / f"{task}.json"
        main(["ablation", "collect", *args, "--out", str(paths[task])])
    collected = json.loads(paths["linear_probe"].read_text())
    assert collected["seeds"] == [0, 1, 2] and collected["splits"] == [1, 2]
    assert {(run["seed"], run["split"]) for run in collected["runs"]} == set(itertools.product([0, 1, 2], [1, 2]))
    out, md = tmp_path / "ablation.json", tmp_path / "ablation.md"
    main(["ablation", "table", "--linear-probe", str(paths["linear_probe"]), "--retrieval", str(paths["retrieval"]),
          "--out", str(out), "--markdown", str(md)])
    table = json.loads(out.read_text())
    per_seed = [20.0 + offset + 1.0 for offset in seed_offset.values()]  # CoCLR c1: 21, 27, 51
    coclr = table["rows"][1]
    assert coclr["linear_probe"]["rgb"] == pytest.approx(statistics.mean(per_seed))
    assert coclr["spread"]["linear_probe"]["rgb"] == pytest.approx(
        {"std": statistics.stdev(per_seed), "min": 21.0, "max": 51.0, "n": 3})
    assert [table["per_seed"][str(s)][1]["retrieval"]["flow"] for s in (0, 1, 2)] == per_seed
    assert table["per_split"]["2"][1]["linear_probe"]["rgb"] == pytest.approx(statistics.mean(per_seed) + 1.0)
    beats = table["claims"]["coclr_beats_infonce"]["linear_probe"]
    assert beats["per_seed"] == {"0": 10.0, "1": 16.0, "2": 40.0} and beats["held"] == 3 and beats["min"] == 10.0
    closed = table["claims"]["gap_to_oracle_closed"]["per_seed"]
    assert closed == pytest.approx({"0": 0.25, "1": 16 / 46, "2": 40 / 70})
    text = md.read_text()
    assert text.startswith("Mean over seeds 0, 1, 2 (mean ± standard deviation (min-max) over the seeds) and splits 1, 2:")
    assert f"| CoCLR, cycle 1 | 33.0 ± {statistics.stdev(per_seed):.1f} (21.0-51.0) |" in text
    assert "Seed 2, mean over splits 1, 2:" in text and "Split 1, mean over seeds 0, 1, 2:" in text
    assert "higher on 3 of 3 seeds" in text


def test_collect_refuses_a_seed_missing_a_split(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(fake_run("retrieval", "infonce", "rgb", 1.0)))
    with pytest.raises(SystemExit, match=r"no runs for \(seed, split\) \[\(1, 2\)\]"):
        main(["ablation", "collect", "--seed", "0", "--split", "1", "--runs", str(run), "--seed", "0", "--split", "2",
              "--runs", str(run), "--seed", "1", "--split", "1", "--runs", str(run), "--out", str(tmp_path / "x.json")])


def test_collect_refuses_unnamed_groups_of_runs(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(fake_run("retrieval", "infonce", "rgb", 1.0)))
    with pytest.raises(SystemExit, match="several --runs groups need a --split or --seed each"):
        main(["ablation", "collect", "--runs", str(run), "--runs", str(run), "--out", str(tmp_path / "x.json")])
