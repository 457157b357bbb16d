"""Scale-out: the SLURM profile's GPU requests, preemption and resume, torchrun on CPUs.

The training tests run the real entry point as a subprocess (as the Snakemake rules
do) on the tiny dataset, with the `cpu` preset shrunk to a few seconds of work.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from coclr.config import complete_settings
from conftest import REPO

EPOCHS = 4


def settings(epochs=EPOCHS, batch=8):
    """The `cpu` preset, with a batch the 36 training videos fill four times per epoch."""
    return complete_settings({
        "model": {"width": 0.25, "depth": 3, "flow_channels": 2},
        "clip": {"frames": 8, "stride": 1, "size": 32, "crop_area": [0.6, 1.0]},
        "moco": {"queue_size": 64, "momentum": 0.99, "temperature": 0.07, "dim": 32},
        "optim": {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": batch},
        "infonce": {"epochs": epochs, "lr_steps": []},
        "resources": {"gpus": 0, "threads": 1, "workers": 0, "checkpoint_minutes": 10},
    })


def pretrain_args(tiny_dataset, tmp_path, **kwargs):
    return ["pretrain", "--view", "rgb", "--loss", "infonce", "--manifest", tiny_dataset["manifest"],
            "--frames", *tiny_dataset["frames"], "--run-dir", tmp_path / "run", "--out", tmp_path / "model.pt",
            "--settings", json.dumps(settings(**kwargs))]


def logged_epochs(run_dir):
    path = run_dir / "metrics.csv"
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return len(list(csv.DictReader(f)))


def test_usr1_saves_state_exits_143_and_the_rerun_resumes(tiny_dataset, tmp_path):
    """What SLURM's `--signal=USR1@120` and the profile's retries do to a training job."""
    command = [sys.executable, "-m", "coclr", *map(str, pretrain_args(tiny_dataset, tmp_path))]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while logged_epochs(tmp_path / "run") < 1 and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 143, stderr
    saved = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["epoch"]
    assert 1 <= saved < EPOCHS, "the signal came too late to interrupt training"
    assert not (tmp_path / "model.pt").exists()

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"at epoch {saved}" in rerun.stderr
    assert torch.load(tmp_path / "model.pt", weights_only=True)["meta"]["epochs"] == EPOCHS


def test_torchrun_two_cpu_processes_train_and_log_the_global_batch(tiny_dataset, tmp_path):
    """What `python -m coclr.launch --gpus 2` runs (torchrun, one process per GPU), on gloo: one epoch, two processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "coclr", *map(str, pretrain_args(tiny_dataset, tmp_path, epochs=1))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "batch 8 per process x 2 = 16 global" in result.stderr
    assert torch.load(tmp_path / "model.pt", weights_only=True)["meta"]["epochs"] == 1


def fake_prepared_dataset(root):
    """A copy of the workflow whose synthetic set looks ingested and extracted (empty files).

    The ingest checkpoint is then done, so the dry run plans every job after it.
    """
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "workflow", root / "workflow", ignore=shutil.ignore_patterns(".snakemake"))
    data = root / "data" / "synthetic"
    files = [data / "videos" / n for n in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
    files += [data / "manifest.csv", data / "frames" / "shard_00000.h5"]
    for age, path in enumerate(reversed(files)):  # each file newer than the one before it
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == "manifest.csv":
            pd.DataFrame({"shard": [0]}).to_csv(path, index=False)
        else:
            path.touch()
        os.utime(path, (time.time() - age, time.time() - age))


def slurm_dry_run_resources(workdir, *config):
    """The `resources:` line of each job of a dry run through the shipped SLURM profile, by rule."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(REPO / "workflow/profiles/slurm"), "-n",
         "models/synthetic/coclr_c1_rgb.pt", *(["--config", *config] if config else [])],
        cwd=workdir, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {}
    for block in result.stdout.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        lines = [line.strip() for line in block.splitlines()]
        resources = next(line for line in lines if line.startswith("resources:"))
        threads = next((line for line in lines if line.startswith("threads:")), "threads: 1")
        jobs[name] = f"{resources}, {threads.replace(': ', '=')}"
    return jobs, result.stdout


def test_slurm_profile_dry_run_requests_gpus_per_rule(tmp_path):
    fake_prepared_dataset(tmp_path)
    jobs, stdout = slurm_dry_run_resources(tmp_path)
    assert "gpu=1," in jobs["flow"] and "slurm_partition=<gpu_partition>" in jobs["flow"]
    assert "gpu_model=a100" in jobs["flow"]
    for rule in ("pretrain", "cotrain"):
        assert "gpu=4," in jobs[rule] and "gpu_model=a100" in jobs[rule]
        assert "slurm_partition=<gpu_partition>" in jobs[rule]
        assert "--signal=USR1@120" in jobs[rule]
    assert "python -m coclr.launch --gpus 4 --history runs/synthetic/infonce_rgb/attempts.log -- pretrain" in stdout


def test_slurm_profile_cpu_flow_asks_for_no_gpu(tmp_path):
    """flow.device: cpu without hand edits: the flow jobs ask for no GPU, no GPU model (SLURM refuses
    `--gpus=a100:0`) and go to the default (CPU) partition; training still gets its GPUs."""
    fake_prepared_dataset(tmp_path)
    jobs, _ = slurm_dry_run_resources(tmp_path, "flow={'device': 'cpu'}")
    assert "gpu=0," in jobs["flow"] and "gpu_model" not in jobs["flow"]
    assert "slurm_partition=<cpu_partition>" in jobs["flow"]
    assert "gpu=4," in jobs["pretrain"] and "gpu_model=a100" in jobs["pretrain"]
