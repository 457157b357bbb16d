"""Transfer evaluation: models pretrained on one dataset, evaluated on each split of another.

Fixtures are real footage cut into the official UCF101 and HMDB51 layouts (tests/realdata.py).
The dry runs check the wiring (which models, which shards, which settings, how many jobs);
one transfer pair runs end to end in tests/test_workflow.py, with the whole pipeline (one
pretraining chain for both).
"""

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

import realdata
from conftest import coclr
from coclr.config import ConfigError, complete_settings, load, validate
from test_workflow import planned_jobs, snakemake, write_config


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {"ucf101": realdata.ucf101_layout(root / "ucf101", **realdata.SMALL),
            "hmdb51": realdata.hmdb51_layout(root / "hmdb51", **realdata.SMALL)}


def shard_count(workdir, dataset):
    return pd.read_csv(workdir / "data" / dataset / "manifest.csv")["shard"].nunique()


@pytest.fixture(scope="module")
def ingested(layouts, tmp_path_factory):
    """Both datasets ingested for real (splits 1-3), so a dry run plans every job after the checkpoint."""
    workdir = tmp_path_factory.mktemp("work")
    hmdb51 = {**layouts["hmdb51"], "splits": [1, 2, 3],
              # Evaluation settings come from the evaluation dataset, the architecture from the pretraining one.
              "overrides": {"model": {"width": 0.25}, "clip": {"eval_stride": 2}}}
    datasets = {"ucf101": {**layouts["ucf101"], "splits": [1, 2, 3]}, "hmdb51": hmdb51}
    configfile = write_config(workdir / "pairs.yaml", datasets, videos_per_shard=6)  # several shards
    snakemake(workdir, "--cores", 1, "data/ucf101/manifest.csv", "data/hmdb51/manifest.csv", configfile=configfile)
    return workdir, configfile


def shell_lines(output, rule):
    """The printed shell commands of one rule in a `-n -p` dry run."""
    blocks = output.split("\nrule ")[1:]
    return [line.split(":", 1)[1].strip() for block in blocks if block.startswith(f"{rule}:")
            for line in block.splitlines() if line.startswith("Shell command: python -m coclr")]


def test_frames_and_flow_of_the_evaluation_dataset_are_extracted_once_for_every_pair_and_split(ingested):
    workdir, configfile = ingested
    targets = ["results/hmdb51/pretrained_ucf101/ablation.md", "results/hmdb51/ablation.md", "results/ucf101/ablation.md"]
    result = snakemake(workdir, "-n", "-p", *targets, configfile=configfile)
    jobs = planned_jobs(result.stdout)
    shards = shard_count(workdir, "hmdb51") + shard_count(workdir, "ucf101")
    assert shard_count(workdir, "hmdb51") >= 2
    assert jobs["frames"] == shards and jobs["flow"] == shards
    assert jobs["split_table"] == 6  # 3 splits of each dataset, shared by the pairs
    assert jobs["pretrain"] == 8 and jobs["cotrain"] == 8  # each dataset pretrains once
    assert jobs["features"] == 3 * 3 * 5 * 2  # pairs x splits x methods x views
    assert jobs["finetune"] == 3 * 3 * 2 and jobs["ablation"] == 3

    features = shell_lines(result.stdout, "features")
    transfer = [c for c in features if "features/hmdb51/pretrained_ucf101/split2/coclr_c2_rgb.pt" in c]
    assert len(transfer) == 1
    command = transfer[0]
    assert "--checkpoint models/ucf101/coclr_c2_rgb.pt" in command
    assert "--manifest data/hmdb51/split2.csv" in command
    assert "--frames data/hmdb51/frames/shard_00000.h5" in command and "--flow" not in command
    settings = json.loads(re.search(r"--settings '(.*?)'", command).group(1))
    assert settings["model"]["width"] == 0.125  # ucf101's (the tiny preset), not hmdb51's override
    assert settings["clip"]["eval_stride"] == 2  # hmdb51's
    flow = next(c for c in features if "features/hmdb51/pretrained_ucf101/split1/infonce_flow.pt" in c)
    assert "--flow data/hmdb51/flow/shard_00000.h5" in flow and "--frames" not in flow
    random = next(c for c in features if "features/hmdb51/pretrained_ucf101/split1/random_rgb.pt" in c)
    assert "--random" in random and json.loads(re.search(r"--settings '(.*?)'", random).group(1))["model"]["width"] == 0.125
    same = next(c for c in features if "features/hmdb51/split3/coclr_c1_flow.pt" in c)
    assert "--checkpoint models/hmdb51/coclr_c1_flow.pt" in same

    collect = next(c for c in shell_lines(result.stdout, "collect")
                   if "--out results/hmdb51/pretrained_ucf101/linear_probe.json" in c)
    assert re.findall(r"--split (\d)", collect) == ["1", "2", "3"]


def test_a_pair_named_twice_is_refused_with_the_target_to_ask_for(ingested):
    workdir, configfile = ingested
    result = snakemake(workdir, "-n", "results/ucf101/pretrained_ucf101/ablation.md", configfile=configfile, check=False)
    assert result.returncode != 0
    assert "live under results/ucf101/ (ask for that target instead)" in result.stdout + result.stderr


def test_the_manifest_holds_every_split_and_each_split_gets_its_table(layouts, tmp_path):
    """HMDB51 leaves a third of the videos out of each split: the manifest keeps them all, once."""
    entry = layouts["hmdb51"]
    listing = ["--format", "hmdb51", "--root", entry["root"], "--splits-dir", entry["splits_dir"]]
    manifest = tmp_path / "manifest.csv"
    coclr("ingest", *listing, "--split", 1, 2, 3, "--videos-per-shard", 5, "--out", manifest)
    videos = pd.read_csv(manifest)
    assert len(videos) == 4 * 3 and videos["video_id"].is_unique
    assert set(videos["split"]) == {"train", "test", "unused"}  # roles of split 1
    for k in (1, 2, 3):
        table_path = tmp_path / f"split{k}.csv"
        coclr("split-table", *listing, "--split", k, "--manifest", manifest, "--out", table_path)
        table = pd.read_csv(table_path)
        assert list(table.columns) == list(videos.columns)
        assert set(table["split"]) == {"train", "test"}
        # realdata: split k tests group k and leaves group k % 3 + 1 out
        assert all(f"_source{k}_" in v for v in table.loc[table["split"] == "test", "video_id"])
        assert not any(f"_source{k % 3 + 1}_" in v for v in table["video_id"])
        shards = videos.set_index("video_id").loc[table["video_id"], "shard"]
        assert (shards.to_numpy() == table["shard"].to_numpy()).all()


def test_the_old_split_key_and_impossible_splits_are_refused():
    config = load()
    config["datasets"]["ucf101"]["split"] = 2
    with pytest.raises(ConfigError, match=r"`datasets.ucf101.split` was replaced by `splits`.*`splits: \[2\]`"):
        validate(config)
    config = load()
    config["datasets"]["k400"]["splits"] = [1, 2]
    with pytest.raises(ConfigError, match=r"`datasets.k400.splits`: k400 has one official split"):
        validate(config)
    config = load()
    del config["datasets"]["hmdb51"]["splits"]
    validate(config)
    assert config["datasets"]["hmdb51"]["splits"] == [1]  # the schema's default


# -- pretraining reads only training videos, and labels only for UberNCE -----------------------

SETTINGS = complete_settings({
    "model": {"width": 0.125, "depth": 3, "flow_channels": 2},
    "clip": {"frames": 4, "stride": 1, "size": 32, "crop_area": [0.6, 1.0]},
    "moco": {"queue_size": 8, "momentum": 0.99, "temperature": 0.07, "dim": 16},
    "optim": {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 4},
    "infonce": {"epochs": 1, "lr_steps": []}, "ubernce": {"epochs": 1, "lr_steps": []},
    "cotrain": {"cycles": 1, "epochs": 1, "lr_steps": [], "topk": 2, "self_drop": 0.9},
    "resources": {"gpus": 0, "threads": 1, "workers": 0, "checkpoint_minutes": 10},
})


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory):
    """12 synthetic videos in one frame and one flow shard; a second manifest with the training
    labels shuffled and the test videos removed."""
    root = tmp_path_factory.mktemp("small")
    coclr("synthesize", "--out", root / "videos", "--classes=2", "--train-groups=2", "--test-groups=1",
          "--clips-per-group=2", "--frames=8", "--size=32", "--workers", 1)
    manifest = root / "manifest.csv"
    coclr("ingest", "--format", "synthetic", "--root", root / "videos", "--videos-per-shard", 20, "--out", manifest)
    coclr("frames", "--manifest", manifest, "--shard", 0, "--out", root / "frames.h5")
    coclr("flow", "--frames", root / "frames.h5", "--out", root / "flow.h5", "--param", "scales=1", "--param", "warps=1",
          "--param", "outer_iterations=1", "--param", "inner_iterations=2")
    videos = pd.read_csv(manifest)
    train = videos[videos["split"] == "train"].reset_index(drop=True)
    assert train["label"].nunique() == 2
    labels = train["label"].to_numpy()
    shuffled_labels = labels[np.random.default_rng(0).permutation(len(labels))]
    assert 0 < (shuffled_labels != labels).sum() < len(labels)  # a new grouping, not a renaming of the classes
    shuffled = train.assign(label=shuffled_labels)
    shuffled.to_csv(root / "shuffled.csv", index=False)
    return root


def train(root, tmp, name, command, *args, manifest="manifest.csv"):
    out = tmp / f"{name}.pt"
    coclr(command, "--manifest", root / manifest, "--frames", root / "frames.h5", "--flow", root / "flow.h5",
          "--run-dir", tmp / name, "--out", out, "--settings", json.dumps(SETTINGS), *args)
    state = torch.load(out, weights_only=True)["state_dict"]
    return {key: value for key, value in state.items() if not key.startswith("queue")}  # the queue keeps labels


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_pretraining_ignores_test_videos_and_labels_except_for_ubernce(small_shards, tmp_path):
    root = small_shards
    manifests = ("manifest.csv", "shuffled.csv")
    # The jobs are independent processes (one thread each): one per core at a time.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = {(manifest, loss, view): pool.submit(train, root, tmp_path, f"{manifest[:-4]}_{loss}_{view}", "pretrain",
                                                    "--view", view, "--loss", loss, manifest=manifest)
                for manifest in manifests for loss, view in (("infonce", "rgb"), ("infonce", "flow"), ("ubernce", "rgb"))}
        runs = {key: job.result() for key, job in jobs.items()}
        cotrained = list(pool.map(lambda m: train(root, tmp_path, f"{m[:-4]}_coclr", "cotrain", "--view", "rgb", "--init",
                                                  tmp_path / f"{m[:-4]}_infonce_rgb.pt", "--miner",
                                                  tmp_path / f"{m[:-4]}_infonce_flow.pt", manifest=m), manifests))
    for view in ("rgb", "flow"):
        assert same(runs["manifest.csv", "infonce", view], runs["shuffled.csv", "infonce", view])
    assert not same(runs["manifest.csv", "ubernce", "rgb"], runs["shuffled.csv", "ubernce", "rgb"])  # the control
    assert same(*cotrained)
