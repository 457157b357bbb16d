"""The training loop shared by every stage: checkpoints, resume, signals, logs.

A stage supplies ``step(batch) -> StepResult``; the trainer owns the rest:

- Adam with lr steps (x0.1) at configured epochs; bf16 autocast on CUDA;
- a resumable state (model, optimiser, scheduler, epoch, RNG) written atomically
  to ``<run_dir>/state.pt`` after every epoch, outside Snakemake's declared
  outputs (Snakemake deletes a failed job's outputs), and resumed automatically;
- SIGTERM / SIGUSR1 (cluster preemption) save the state and exit with status 143,
  so a requeued or retried job resumes at the interrupted epoch;
- a NaN or infinite loss stops with the epoch and step, leaving the last good state;
- tqdm progress, ``metrics.csv`` and TensorBoard logs (loss, accuracy, lr, clips/s).
"""

import contextlib
import csv
import hashlib
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from coclr import distributed
from coclr.io import atomic_path, sha256

PREEMPTED_EXIT = 143  # 128 + SIGTERM: the job failed and should be retried


class StepResult(NamedTuple):
    loss: torch.Tensor
    stats: dict  # extra scalars to average over the epoch (e.g. accuracy, mining purity)
    update: bool = True  # False: compute but do not step the optimiser (queue still filling)


class Preempted(SystemExit):
    def __init__(self):
        super().__init__(PREEMPTED_EXIT)


def settings_hash(settings: dict) -> str:
    """Identity of a run's recipe. Epoch counts and compute resources are left out, so that a
    run can be extended (more epochs) or moved (other threads/workers) and still resume."""
    def recipe(value):
        if isinstance(value, dict):
            return {k: recipe(v) for k, v in value.items() if k not in ("epochs", "resources")}
        return value

    return hashlib.sha256(json.dumps(recipe(settings), sort_keys=True).encode()).hexdigest()[:16]


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Runs ``epochs`` epochs of ``step`` over ``loader``, resumably."""

    def __init__(self, model, run_dir, settings: dict, epochs: int, lr_steps=(), lr=1e-3, weight_decay=1e-5,
                 device=torch.device("cpu"), param_groups=None, inputs=()):
        """``param_groups``: Adam's groups (e.g. a lower lr for a backbone), default every trainable
        parameter at ``lr``. ``inputs``: files the run starts from (checkpoints); a state saved from
        other contents of them is not resumed."""
        self.model, self.device, self.epochs = model, device, epochs
        self.run_dir = Path(run_dir)
        self.state_path = self.run_dir / "state.pt"
        self.settings_id = settings_hash({**settings, "inputs": [sha256(path) for path in inputs]})
        groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        self.optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=list(lr_steps), gamma=0.1)
        self.epoch = 0  # first epoch still to run
        self._stop_signal = None
        if distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume()

    # -- state ---------------------------------------------------------------------------
    def unwrapped(self):
        return getattr(self.model, "module", self.model)

    def save_state(self) -> None:
        if not distributed.is_main():
            return
        state = {
            "model": self.unwrapped().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "rng": rng_state(),
            "settings": self.settings_id,
        }
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)

    def resume(self) -> None:
        """Continue from ``state.pt`` if it was written with the same settings."""
        if not self.state_path.exists():
            return
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        if state["settings"] != self.settings_id:  # other settings or other starting checkpoints
            stale = self.state_path.with_name(f"state.stale-{int(time.time())}.pt")
            if distributed.is_main():
                self.state_path.rename(stale)
            print(f"settings changed since {self.state_path} was written: starting afresh (kept as {stale})",
                  file=sys.stderr)
            return
        self.unwrapped().load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        set_rng_state(state["rng"])
        print(f"resumed from {self.state_path} at epoch {self.epoch}", file=sys.stderr)

    # -- signals -------------------------------------------------------------------------
    @contextlib.contextmanager
    def preemptible(self):
        """Turn SIGTERM/SIGUSR1 into a save-and-exit at the next step boundary."""
        def note(signum, frame):
            self._stop_signal = signum

        previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _check_preempted(self) -> None:
        if distributed.any_process(self._stop_signal is not None):  # all ranks stop at the same step
            self.save_state()  # the epoch in progress is run again on resume
            print(f"received a stop signal: saved {self.state_path} at epoch {self.epoch}, exiting",
                  file=sys.stderr)
            raise Preempted()

    # -- loop ----------------------------------------------------------------------------
    def fit(self, loader, step, sampler=None, on_epoch_end=None) -> list:
        """Train to ``epochs``; return the per-epoch metrics of this run."""
        history = []
        logger = EpochLogger(self.run_dir) if distributed.is_main() else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" \
            else contextlib.nullcontext()
        with self.preemptible():
            while self.epoch < self.epochs:
                if sampler is not None:
                    sampler.set_epoch(self.epoch)
                self.model.train()
                totals, steps, clips, start = {}, 0, 0, time.time()
                # Progress bars on a terminal only: job logs get one summary line per epoch.
                bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False, file=sys.stderr,
                           disable=True if logger is None else None)
                for i, batch in enumerate(bar):
                    with autocast:
                        result = step(batch)
                    loss = result.loss.float()
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"loss is {loss.item()} at epoch {self.epoch + 1}, step {i + 1}: stopping; the last good "
                            f"state is {self.state_path} (lower the learning rate or check the input data)")
                    if result.update:
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        self.optimizer.step()
                    for key, value in {"loss": loss.item(), **result.stats}.items():
                        if value == value:  # NaN marks "not measured in this step"
                            n, total = totals.get(key, (0, 0.0))
                            totals[key] = (n + 1, total + float(value))
                    steps += 1
                    clips += len(batch["index"])
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    self._check_preempted()
                metrics = {key: distributed.mean_over_processes(total / n) for key, (n, total) in totals.items()}
                seconds = time.time() - start
                clips_per_s = distributed.mean_over_processes(clips / max(seconds, 1e-9)) * distributed.world_size()
                metrics.update(epoch=self.epoch + 1, lr=self.optimizer.param_groups[0]["lr"], steps=steps,
                               clips_per_s=clips_per_s)
                self.scheduler.step()
                self.epoch += 1
                if on_epoch_end is not None:
                    on_epoch_end(metrics)
                self.save_state()
                history.append(metrics)
                if logger is not None:
                    logger.log(metrics)
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in metrics.items()), file=sys.stderr)
        if logger is not None:
            logger.close()
        return history


class EpochLogger:
    """Per-epoch metrics to ``metrics.csv`` and TensorBoard (``<run_dir>/tensorboard``)."""

    def __init__(self, run_dir: Path):
        self.csv_path = run_dir / "metrics.csv"
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, metrics: dict) -> None:
        rows = []
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < metrics["epoch"]]
        rows.append(metrics)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        for key, value in metrics.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, metrics["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
