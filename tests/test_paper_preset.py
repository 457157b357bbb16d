"""The `paper` preset end to end on CPU, on real footage in UCF101's layout.

The recipe is the paper's: full-width S3D, 32-frame 128x128 clips, its
augmentations, OpenCV-default TV-L1 on frames at short side 128, two CoCLR
cycles, the paper's linear probe and fine-tune batch. Only what the data cannot
fill is shrunk: one epoch per training stage, and the queue and the batch of
pretraining. The data is the least the DAG runs on: 2 classes x 3 groups of one
33-frame video (one 32-frame window of flow), so split 1 trains on 2 groups a
class, the fewest that the probe's and the fine-tune's group hold-out accept.

A second run trains the 3-channel reference-layout flow network and probes it,
on the first run's frames and flow (copied, not recomputed). Each run prints its
stages' wall time and peak memory, read from the job logs (`pytest -s` shows them;
docs/benchmarks.md, "The paper preset on CPU", has the figures).
"""

import json
import math
import shutil
import time

import pandas as pd
import pytest
import torch
import yaml
from matplotlib.image import imread

from benchmarks.data import print_table
from benchmarks.stages import HEADERS, stage_table
from test_workflow import check_ablation, check_records, snakemake
from realdata import CLASSES, ucf101_layout

# Everything the data cannot fill, shrunk; the rest is the `paper` preset as config.yaml has it.
SHRUNK = {
    "moco": {"queue_size": 2},  # one batch: a stage's second step trains with a full queue and mines
    "optim": {"batch_size": 2},  # 4 training videos: two steps an epoch
    "infonce": {"epochs": 1},
    "ubernce": {"epochs": 1},
    "cotrain": {"epochs": 1},
    "finetune": {"epochs": 1},
}
# The reference S3D (the authors' checkpoints' encoder_q.0): 7,910,048 parameters with 3 input
# channels; Conv_1a's 1x7x7 kernels (64 of them) take 49 weights per input channel.
S3D_PARAMS_RGB = 7_910_048
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def paper_config(root, entry, flow_channels):
    config = {
        "dataset": "ucf101", "preset": "paper",
        "datasets": {"ucf101": {**entry, "splits": [1], "overrides": {**SHRUNK, "model": {"flow_channels": flow_channels}}}},
        "ingest": {"videos_per_shard": 3, "workers": 1},  # two shards: two flow jobs at a time
        "frames": {"short_side": 128},  # the paper's frames: 171x128 from this 160x120 footage
        "flow": {"params": {}},  # OpenCV's default TV-L1 parameters, as the paper
    }
    path = root / f"paper_flow{flow_channels}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_workflow(workdir, configfile, *targets):
    """Snakemake on 2 cores; prints the stage table of the jobs this call ran and returns its rows."""
    start = time.perf_counter()
    snakemake(workdir, "--cores", 2, *targets, configfile=configfile)
    rows = stage_table(workdir / "logs")
    print(f"\n{configfile.name} in {workdir.name}: {time.perf_counter() - start:.0f} s wall on 2 cores")
    print_table(rows, HEADERS)
    return rows


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """The whole DAG with 2-channel flow, from the videos to the report: (root, dataset entry, workdir, stage rows)."""
    root = tmp_path_factory.mktemp("ucf101_real")
    classes = {name: CLASSES[name] for name in ("Biking", "Phoning")}
    entry = ucf101_layout(root / "footage", groups=3, clips=1, frames=33, classes=classes)
    workdir = root / "flow2"
    rows = run_workflow(workdir, paper_config(root, entry, 2))
    return root, entry, workdir, rows


@pytest.mark.slow
@pytest.mark.paper
@pytest.mark.timeout(1800)  # the DAG (fixture) included: minutes on an idle 2-core machine, far more on a loaded one
def test_paper_preset_end_to_end_on_real_footage(paper_run):
    _, _, workdir, rows = paper_run
    stages = {r[0] for r in rows}
    assert {"ingest", "check", "frames", "flow", "pretrain rgb", "pretrain flow", "cotrain rgb", "cotrain flow",
            "features rgb", "features flow", "finetune rgb", "finetune flow", "ablation"} <= stages
    results = workdir / "results" / "ucf101"
    methods = check_records(workdir, results, split=1, models="ucf101",
                            pretrained={method: 1 for method in ("infonce", "coclr_c1", "coclr_c2", "ubernce")},
                            train_videos=4, test_videos=2, probe_epochs=100)  # 2 classes x 2 groups; 2 x 1
    check_ablation(results, methods)
    for figure in ("curves", "purity", "tsne", "retrieval", "flow"):
        assert imread(results / "figures" / f"{figure}.png").ndim == 3, figure
    assert "CoCLR, cycle 2" in (results / "ablation.html").read_text()
    for view, channels in (("rgb", 3), ("flow", 2)):
        check_model(workdir, f"coclr_c2_{view}", channels)
    purity = pd.read_csv(workdir / "runs/ucf101/coclr_c1_rgb/metrics.csv")["mining_purity"]
    assert purity.notna().any()  # the queue filled, so positives were mined


@pytest.mark.slow
@pytest.mark.paper
@pytest.mark.timeout(1800)
def test_paper_preset_with_reference_layout_flow(paper_run):
    """3-channel (128, y, x) flow through the smallest target that trains and evaluates it: flow InfoNCE
    and its linear probe, on the first run's frames and flow."""
    root, entry, first, _ = paper_run
    workdir = root / "flow3"
    shutil.copytree(first / "data", workdir / "data")  # with their times: Snakemake does not rebuild them
    target = "results/ucf101/split1/linear_probe/infonce_flow.json"
    rows = run_workflow(workdir, paper_config(root, entry, 3), target)
    assert [r[0] for r in rows] == ["pretrain flow", "features flow", "linear-probe flow"]
    assert 0.0 <= json.loads((workdir / target).read_text())["metrics"]["top1"] <= 100.0
    check_model(workdir, "infonce_flow", 3)


def check_model(workdir, name, channels):
    """The paper's network: the full S3D's parameter count, a 1024-d backbone, 32x128x128 clips in evaluation."""
    model = torch.load(workdir / f"models/ucf101/{name}.pt", weights_only=True)
    assert model["arch"]["width"] == 1.0 and model["arch"]["depth"] == 5
    backbone = {k: v for k, v in model["state_dict"].items() if k.startswith("encoder_q.0.")}
    params = sum(v.numel() for k, v in backbone.items() if not k.endswith(BUFFERS))
    assert params == S3D_PARAMS_RGB - 64 * 49 * (3 - channels)
    assert backbone["encoder_q.0.Conv_1a.conv1.weight"].shape == (64, channels, 1, 7, 7)
    assert backbone["encoder_q.0.Mixed_5c.branch3.1.conv.weight"].shape[0] == 128  # 384 + 384 + 128 + 128 = 1024
    features = torch.load(workdir / f"features/ucf101/split1/{name}.pt", weights_only=True)
    assert features["settings"]["clip"]["frames"] == 32 and features["settings"]["clip"]["size"] == 128
    assert features["train"]["features"].shape[1] == 1024
    assert math.isfinite(float(features["test"]["features"].sum()))
