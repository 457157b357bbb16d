"""The shared training loop: resume, preemption, NaN guard, logs."""

import csv
import os
import signal

import pytest
import torch
from torch import nn

from coclr.training.trainer import PREEMPTED_EXIT, Preempted, StepResult, Trainer


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.register_buffer("queue", torch.zeros(3))


def batches(n=4):
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(8, 4, generator=g), "index": torch.arange(8)} for _ in range(n)]


def regression_step(model, poison_at=None, on_step=None):
    calls = {"n": 0}

    def step(batch):
        calls["n"] += 1
        if on_step:
            on_step(calls["n"])
        loss = (model.layer(batch["x"]) - 1).pow(2).mean()
        if calls["n"] == poison_at:
            loss = loss * float("nan")
        model.queue += 1  # state that must survive a resume
        return StepResult(loss, {"acc": 0.5})

    return step


def make(tmp_path, epochs=3, model=None, settings=None):
    torch.manual_seed(0)
    model = model or Toy()
    return model, Trainer(model, tmp_path / "run", settings or {"a": 1}, epochs=epochs, lr_steps=[2])


def test_resume_continues_at_the_next_epoch_with_the_same_state(tmp_path):
    model, trainer = make(tmp_path, epochs=2)
    trainer.fit(batches(), regression_step(model))
    resumed_model, resumed = make(tmp_path, epochs=3)
    assert resumed.epoch == 2
    assert torch.equal(resumed_model.queue, model.queue) and torch.equal(resumed_model.layer.weight, model.layer.weight)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)  # the lr step at epoch 2 survived
    history = resumed.fit(batches(), regression_step(resumed_model))
    assert [h["epoch"] for h in history] == [3]
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_changed_settings_start_afresh(tmp_path):
    model, trainer = make(tmp_path, epochs=1)
    trainer.fit(batches(), regression_step(model))
    _, fresh = make(tmp_path, epochs=1, settings={"a": 2})
    assert fresh.epoch == 0
    assert list((tmp_path / "run").glob("state.stale-*.pt"))


def test_a_changed_starting_checkpoint_starts_afresh(tmp_path):
    init = tmp_path / "init.pt"
    init.write_bytes(b"weights of an upstream stage")
    model = Toy()
    Trainer(model, tmp_path / "run", {"a": 1}, epochs=1, inputs=[init]).fit(batches(), regression_step(model))
    assert Trainer(Toy(), tmp_path / "run", {"a": 1}, epochs=2, inputs=[init]).epoch == 1  # same start: resumed
    init.write_bytes(b"the upstream stage was rerun")
    assert Trainer(Toy(), tmp_path / "run", {"a": 1}, epochs=2, inputs=[init]).epoch == 0


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_state(tmp_path):
    model, trainer = make(tmp_path, epochs=3)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 3"):
        trainer.fit(batches(), regression_step(model, poison_at=7))
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_and_exits_for_requeue(tmp_path, signum):
    model, trainer = make(tmp_path, epochs=3)

    def send_in_epoch_two(n):
        if n == 6:
            os.kill(os.getpid(), signum)

    with pytest.raises(Preempted) as exit_info:
        trainer.fit(batches(), regression_step(model, on_step=send_in_epoch_two))
    assert exit_info.value.status == PREEMPTED_EXIT
    _, resumed = make(tmp_path, epochs=3)
    assert (resumed.epoch, resumed.position["step"]) == (1, 2)  # continues after the step it stopped at
    assert signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler)  # handlers restored
