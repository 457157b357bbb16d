"""The `paper` preset end to end on CPU, on real footage in UCF101's layout.

The recipe is the paper's: full-width S3D, 32-frame 128x128 clips, its
augmentations, OpenCV-default TV-L1 on frames at short side 128. Only what the
data cannot fill is shrunk: epochs, the queue and the batch (12 videos, 8 of
them for training). A second run trains with 3-channel reference-layout flow on
the first run's frames and flow. Each run prints its stages' wall time and peak
memory (read from the job logs; `pytest -s` shows them).
"""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from benchmarks.data import print_table
from benchmarks.stages import HEADERS, stage_table
from coclr.models import load_backbone, load_model
from conftest import REPO
from realdata import ucf101_layout

# Everything the data cannot fill, shrunk; the rest is the `paper` preset as config.yaml has it.
SHRUNK = {
    "moco": {"queue_size": 4},  # one batch: the second step of a stage trains with a full queue
    "optim": {"batch_size": 4},  # 8 training videos: two steps an epoch
    "infonce": {"epochs": 1},
    "ubernce": {"epochs": 1},
    "cotrain": {"epochs": 1, "topk": 2},  # a queue of 4 holds 2-3 candidates outside the anchor's group
    "linear_probe": {"epochs": 2, "batch_size": 8},
    "finetune": {"epochs": 1, "batch_size": 4},
}


def paper_config(tmp_path, entry, flow_channels=2):
    config = {
        "dataset": "ucf101", "preset": "paper",
        "datasets": {"ucf101": {**entry, "splits": [1], "overrides": {**SHRUNK, "model": {"flow_channels": flow_channels}}}},
        "ingest": {"videos_per_shard": 6, "workers": 1},
        "frames": {"short_side": 128},  # the paper's frames: 170x128 from this 160x120 footage
        "flow": {"params": {}},  # OpenCV's default TV-L1 parameters, as the paper
    }
    path = tmp_path / f"paper_flow{flow_channels}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_workflow(workdir, configfile, *targets):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                             "--directory", str(workdir), "--cores", "2", *targets, f"--configfile={configfile}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    rows = stage_table(workdir / "logs")
    print(f"\nstages of {configfile.name} in {workdir.name} (2 cores, shared machine):")
    print_table(rows, HEADERS)
    return rows


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    """Real footage in UCF101's layout, ingested, with frames and TV-L1 flow as the paper extracts them."""
    root = tmp_path_factory.mktemp("ucf101_real")
    entry = ucf101_layout(root / "footage", groups=3, clips=1, frames=33)
    workdir = root / "data_stage"
    rows = run_workflow(workdir, paper_config(root, entry), "data/ucf101/flow/shard_00000.h5",
                        "data/ucf101/flow/shard_00001.h5")
    assert [r[0] for r in rows] == ["ingest", "check", "frames", "flow"]
    return root, entry, workdir / "data"


def workdir_with_data(paper_data, name):
    """A fresh run directory holding the data stage's outputs (copied with their times: not rebuilt)."""
    root, _, data = paper_data
    shutil.copytree(data, root / name / "data")
    return root / name


@pytest.mark.slow
@pytest.mark.paper
@pytest.mark.timeout(1800)  # fixture included; the paper recipe on CPU: docs/benchmarks.md, "The paper preset on CPU"
def test_paper_preset_end_to_end_on_real_footage(paper_data):
    workdir = workdir_with_data(paper_data, "flow2")
    rows = run_workflow(workdir, paper_config(paper_data[0], paper_data[1], 2))
    stages = {r[0] for r in rows}
    assert {"pretrain rgb", "pretrain flow", "cotrain rgb", "cotrain flow", "finetune rgb", "ablation"} <= stages
    assert not {"ingest", "check", "frames", "flow"} & stages, "the data stage ran again"
    results = workdir / "results" / "ucf101"
    ablation = json.dumps(json.loads((results / "ablation.json").read_text()))
    for method in ["random", "infonce", "coclr_c1", "coclr_c2", "ubernce"]:
        assert method in ablation
    for figure in ["curves", "purity", "tsne", "retrieval", "flow"]:
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0
    check_models(workdir, "coclr_c2", 2)


@pytest.mark.slow
@pytest.mark.paper
@pytest.mark.timeout(1800)
def test_paper_preset_with_reference_layout_flow(paper_data):
    """3-channel (128, y, x) flow through the stages it changes: both InfoNCE inits, a CoCLR cycle
    (RGB mined by the 3-channel flow network, then flow), and every evaluation of the flow model."""
    workdir = workdir_with_data(paper_data, "flow3")
    targets = [f"results/ucf101/{task}/coclr_c1_flow.json" for task in ("linear_probe", "retrieval", "finetune")]
    run_workflow(workdir, paper_config(paper_data[0], paper_data[1], 3), *targets)
    for target in targets:
        assert json.loads((workdir / target).read_text())["metrics"]
    check_models(workdir, "coclr_c1", 3)


def check_models(workdir, method, flow_channels):
    """Full S3D, 32x128x128 clips, 1024-d features, and positives mined in the first CoCLR stage."""
    model = load_model(workdir / f"models/ucf101/{method}_flow.pt")
    assert model["arch"]["in_channels"] == flow_channels
    # The reference S3D: 7,910,048 parameters with 3 input channels; Conv_1a's 1x7x7 kernels take the rest.
    params = sum(p.numel() for p in load_backbone(model).parameters())
    assert params == 7_910_048 - 64 * 7 * 7 * (3 - flow_channels)
    features = torch.load(workdir / f"features/ucf101/{method}_flow.pt", weights_only=True)
    assert features["settings"]["clip"]["frames"] == 32 and features["settings"]["clip"]["size"] == 128
    assert features["train"]["features"].shape[1] == 1024
    purity = pd.read_csv(workdir / "runs/ucf101/coclr_c1_rgb/metrics.csv")["mining_purity"]
    assert purity.notna().any()  # the queue filled, so positives were mined
