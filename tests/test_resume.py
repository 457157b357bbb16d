"""Mid-epoch checkpoints: a run stopped at any step and resumed ends bit-identical to one never stopped."""

import errno
import os
import random
import signal
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from coclr.errors import CoclrError
from coclr.io import DiskFull, OwnerLock
from coclr.training.sampler import resumable_loader
from coclr.training.trainer import Preempted, StepResult, Trainer


class Noisy(Dataset):
    """Samples drawn with both python's and torch's RNGs, as the clip augmentation does."""

    def __len__(self):
        return 40

    def __getitem__(self, index):
        x = torch.full((4,), float(index)) + torch.randn(4) * random.random()
        return {"x": x, "index": index}


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.register_buffer("queue", torch.zeros(6))  # a MoCo-like queue, updated every step


def step_of(model, stop_at=None, crash_at=None):
    calls = {"n": 0}

    def step(batch):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise RuntimeError("node lost")
        if calls["n"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # preemption: the trainer saves after this step
        out = nn.functional.dropout(model.layer(batch["x"] / 40), 0.5)  # the training step's own draws
        model.queue.copy_(torch.roll(model.queue, 1))
        model.queue[0] = out.detach().mean()
        return StepResult((out - 1).pow(2).mean(), {"acc": float(calls["n"])})

    return step


def run(run_dir, workers=0, checkpoint_minutes=None, **stop):
    torch.manual_seed(0)
    random.seed(0)
    model = Toy()
    trainer = Trainer(model, run_dir, {"a": 1}, epochs=3, lr_steps=[2], lr=0.05,
                      checkpoint_minutes=checkpoint_minutes)
    trainer.fit(resumable_loader(Noisy(), 8, seed=3, workers=workers), step_of(model, **stop))
    return model


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("workers", [0, 2])
def test_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, workers):
    reference = run(tmp_path / "reference", workers)
    k = random.Random(14).randrange(1, 15)  # 5 steps per epoch: any step of the three epochs
    for stop_at in sorted({7, k}):  # 7: the second step of epoch 2
        run_dir = tmp_path / f"stopped-{stop_at}"
        with pytest.raises(Preempted):
            run(run_dir, workers, stop_at=stop_at)
        state = torch.load(run_dir / "state.pt", weights_only=True)
        assert state["epoch"] * 5 + state["position"]["step"] == stop_at
        resumed = run(run_dir, workers)
        assert same(resumed, reference), f"stopped at step {stop_at}"


def test_workers_do_not_change_the_samples(tmp_path):
    assert same(run(tmp_path / "w0", 0), run(tmp_path / "w2", 2))


def test_a_crash_loses_only_the_steps_since_the_timed_checkpoint(tmp_path):
    reference = run(tmp_path / "reference")
    with pytest.raises(RuntimeError, match="node lost"):
        run(tmp_path / "run", checkpoint_minutes=1e-9, crash_at=9)  # a timed save after every step
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert (state["epoch"], state["position"]["step"]) == (1, 3)  # step 8 was the last one saved
    assert same(run(tmp_path / "run"), reference)


def test_a_broken_state_falls_back_to_the_previous_one(tmp_path, capsys):
    with pytest.raises(Preempted):
        run(tmp_path / "run", checkpoint_minutes=1e-9, stop_at=8)
    state, previous = tmp_path / "run" / "state.pt", tmp_path / "run" / "state.prev.pt"
    assert torch.load(previous, weights_only=True)["position"]["step"] == 2  # the one before: step 7
    state.write_bytes(state.read_bytes()[:1000])  # torn by a failing disk
    torch.manual_seed(0)
    resumed = Trainer(Toy(), tmp_path / "run", {"a": 1}, epochs=3, lr_steps=[2], lr=0.05)
    err = capsys.readouterr().err
    assert f"{state} does not load" in err and f"falling back to the previous state {previous}" in err
    assert (resumed.epoch, resumed.position["step"]) == (1, 2)


def test_a_full_disk_names_the_state_and_keeps_the_previous_one(tmp_path, monkeypatch):
    with pytest.raises(Preempted):
        run(tmp_path / "run", stop_at=3)
    before = (tmp_path / "run" / "state.pt").read_bytes()

    def save_until_full(obj, path):
        with open(path, "wb") as f:
            f.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_until_full)
    needed = f"{len(before) / 1024:.1f} KiB"  # the size of the state it would replace
    with pytest.raises(DiskFull, match=rf"no space left on device writing .*state\.pt: .* free in .*, it needs at "
                                       rf"least {needed}"):
        run(tmp_path / "run", stop_at=2)
    assert (tmp_path / "run" / "state.pt").read_bytes() == before
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]


def test_a_second_trainer_on_the_run_dir_is_refused(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "lock").write_text(f'{{"pid": {owner.pid}, "host": "{socket.gethostname()}"}}')
        with pytest.raises(CoclrError, match=rf"held by pid {owner.pid} on {socket.gethostname()}"):
            Trainer(Toy(), tmp_path / "run", {"a": 1}, epochs=1)
    finally:
        owner.kill()
        owner.wait()


def test_the_lock_of_a_dead_trainer_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "lock").write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}"}}')
    model = Toy()
    trainer = Trainer(model, tmp_path / "run", {"a": 1}, epochs=1)
    assert f"pid {dead.pid} on {socket.gethostname()}, is dead: taking the lock over" in capsys.readouterr().err
    assert f'"pid": {os.getpid()}' in (tmp_path / "run" / "lock").read_text()
    trainer.fit(resumable_loader(Noisy(), 8, seed=0), step_of(model))
    assert not (tmp_path / "run" / "lock").exists()  # released when training ends


def test_a_lock_of_another_host_is_taken_over_only_once_stale(tmp_path, capsys):
    lock = tmp_path / "run" / "lock"
    lock.parent.mkdir()
    lock.write_text('{"pid": 1, "host": "node-that-died"}')
    with pytest.raises(CoclrError, match="held by pid 1 on node-that-died"):
        Trainer(Toy(), tmp_path / "run", {"a": 1}, epochs=1)
    old = lock.stat().st_mtime - OwnerLock.STALE_S - 1
    os.utime(lock, (old, old))
    Trainer(Toy(), tmp_path / "run", {"a": 1}, epochs=1)
    assert "node-that-died, has not refreshed it for" in capsys.readouterr().err
