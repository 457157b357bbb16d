"""coclr.launch: GPUs handed out on one machine, and no orphans when a job's shell dies.

The GPU tests fake a 4-GPU machine with COCLR_GPU_COUNT (no GPU needed): concurrent jobs get
distinct devices, a 2-GPU job two of its own, and a job that finds too few free waits for them.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from coclr import devices, launch
from coclr.errors import CoclrError
from test_scaleout import logged_epochs, pretrain_args


@pytest.fixture
def four_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("COCLR_GPU_COUNT", "4")
    monkeypatch.setenv("COCLR_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return {**os.environ}


def hold(n, seconds, env):
    """Another process that takes n devices and keeps them for a while; returns it and the ids it got."""
    code = ("import sys, time; from coclr import devices; d = devices.acquire(%d); "
            "print(d.env_value, flush=True); time.sleep(%f)" % (n, seconds))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


def launched_devices(env, gpus, *command):
    """The devices `python -m coclr.launch` gave its command (its start line in the log)."""
    result = subprocess.run([sys.executable, "-m", "coclr.launch", "--gpus", str(gpus), "--", *command],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stderr.splitlines() if l.startswith("coclr.launch: start"))
    return line.rsplit("CUDA_VISIBLE_DEVICES=", 1)[1]


def test_concurrent_jobs_get_distinct_devices(four_gpus):
    held = [hold(1, 30, four_gpus) for _ in range(3)]
    try:
        ids = [got for _, got in held]
        assert sorted(ids) == ["0", "1", "2"]  # three jobs at once, three cards
        # A fourth job gets the one left, through the launcher, and its command sees only it.
        assert launched_devices(four_gpus, 1, "check", "--help") == "3"
    finally:
        for proc, _ in held:
            proc.kill()
            proc.wait()


def test_a_two_gpu_job_gets_two_devices_of_its_own(four_gpus):
    proc, first = hold(1, 30, four_gpus)
    try:
        assert first == "0"
        got = launched_devices(four_gpus, 2, "check", "--help")
        assert got == "1,2" and "0" not in got.split(",")
    finally:
        proc.kill()
        proc.wait()
    assert launch.command_line(2, ["pretrain"])[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    assert launch.command_line(1, ["pretrain"])[1:3] == ["-m", "coclr"]


def test_a_job_waits_for_free_devices_and_a_killed_holder_frees_them(four_gpus, tmp_path):
    proc, got = hold(4, 300, four_gpus)
    assert got == "0,1,2,3"
    with pytest.raises(TimeoutError, match="no 1 free GPU"):
        devices.acquire(1, timeout_s=1.5)
    proc.kill()  # a killed job: the kernel drops its locks
    proc.wait()
    taken = devices.acquire(4, timeout_s=10)
    assert taken.ids == ["0", "1", "2", "3"]
    taken.release()


def test_more_gpus_than_the_machine_has_is_refused(four_gpus):
    with pytest.raises(CoclrError, match="asks for 5 GPU.*offers 4"):
        devices.acquire(5)


def test_under_slurm_the_schedulers_devices_are_kept(four_gpus):
    env = {**four_gpus, "SLURM_JOB_ID": "123", "CUDA_VISIBLE_DEVICES": "2"}
    assert launched_devices(env, 1, "check", "--help") == "2"


@pytest.mark.slow
def test_a_trainer_dies_with_its_shell_and_the_rerun_resumes(tiny_dataset, tmp_path):
    """kill -9 of the job's shell (Snakemake's job, a SLURM step): the trainer gets SIGTERM from the
    kernel (PR_SET_PDEATHSIG), saves and exits; the rerun right after resumes instead of meeting a
    live lock."""
    args = " ".join(f"'{a}'" for a in map(str, pretrain_args(tiny_dataset, tmp_path, epochs=500)))
    log = tmp_path / "job.log"
    shell = subprocess.Popen(["bash", "-c", f"python -m coclr.launch --gpus 0 -- {args} >> {log} 2>&1; true"],
                             start_new_session=True)
    deadline = time.time() + 120
    while logged_epochs(tmp_path / "run") < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert logged_epochs(tmp_path / "run") >= 1, log.read_text()
    lock = (tmp_path / "run" / "lock").read_text()
    trainer = int(lock.split()[0]) if lock.split()[0].isdigit() else None
    children = subprocess.run(["pgrep", "-s", str(shell.pid)], capture_output=True, text=True).stdout.split()
    os.kill(shell.pid, signal.SIGKILL)
    shell.wait()
    deadline = time.time() + 60
    alive = [int(p) for p in children if int(p) != shell.pid]
    while alive and time.time() < deadline:
        alive = [p for p in alive if subprocess.run(["kill", "-0", str(p)], capture_output=True).returncode == 0]
        time.sleep(0.2)
    assert not alive, f"orphans left after kill -9 of the job's shell: {alive} (trainer {trainer})"
    text = log.read_text()
    assert "received a stop signal: saved" in text, text
    saved = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    # The rerun, at once: no lock in the way; it continues where the dead job saved.
    rerun_args = pretrain_args(tiny_dataset, tmp_path, epochs=saved["epoch"] + 1)
    rerun = subprocess.run([sys.executable, "-m", "coclr", *map(str, rerun_args)], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"at epoch {saved['epoch']}, step {saved['position']['step']}" in rerun.stderr
    assert "already running" not in rerun.stderr
