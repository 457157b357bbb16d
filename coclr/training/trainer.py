"""The training loop shared by every stage: checkpoints, resume, signals, logs.

A stage supplies ``step(batch) -> StepResult``; the trainer owns the rest:

- Adam with lr steps (x0.1) at configured epochs; bf16 autocast on CUDA (the
  contrastive head, losses and mining stay fp32: docs/model.md, "Numerics");
- a resumable state (model with its MoCo queue, optimiser, scheduler, epoch, step
  within the epoch, the epoch's running metrics, RNG states) written atomically to
  ``<run_dir>/state.pt`` after every epoch and every ``checkpoint_minutes`` within
  one, outside Snakemake's declared outputs (Snakemake deletes a failed job's
  outputs); the previous state is kept as ``state.prev.pt`` and used when the
  newest does not load;
- an exact resume: the sample order of an epoch is a function of (seed, epoch)
  and each sample's augmentation of (seed, epoch, index) (:mod:`coclr.training.sampler`),
  so a resumed run skips the consumed batches by index and continues with the
  same remaining samples, bit for bit on CPU;
- SIGTERM / SIGUSR1 (cluster preemption) save the state at the next step boundary
  and exit with status 143, so a requeued or retried job resumes at that step; under
  SLURM the same happens ``stop_margin_minutes`` before the job's end time
  (:func:`job_end_time`), a backstop for a signal that never arrives;
- ``<run_dir>/lock`` (owner pid and host) keeps a second trainer off the run dir;
- a NaN or infinite loss stops with the epoch and step, leaving the last good state;
- tqdm progress, ``metrics.csv`` and TensorBoard logs (loss, accuracy, lr, clips/s).
"""

import contextlib
import csv
import hashlib
import json
import logging
import random
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from coclr import distributed
from coclr.errors import CoclrError
from coclr.io import OwnerLock, atomic_path, sha256
from coclr.launch import die_with_parent
from coclr.training.sampler import remaining

log = logging.getLogger(__name__)

PREEMPTED_EXIT = 143  # 128 + SIGTERM: the job failed and should be retried


class StepResult(NamedTuple):
    loss: torch.Tensor
    stats: dict  # extra scalars to average over the epoch (e.g. accuracy, mining purity)
    update: bool = True  # False: compute but do not step the optimiser (queue still filling)


class Preempted(CoclrError):
    """Stopped to be resumed (a stop signal, or the SLURM job's end near): the state is saved and the
    trainer has said so; the process exits with status 143, so the job is retried or requeued."""

    status = PREEMPTED_EXIT


def job_end_time():
    """The SLURM job's end time (seconds since the epoch), or None outside SLURM or without a limit:
    ``SLURM_JOB_END_TIME`` (set by SLURM >= 23.02), else ``squeue -h -j $SLURM_JOB_ID -o %e`` (a local
    time such as 2026-12-03T10:05:00; ``N/A`` or ``Unknown`` without a limit)."""
    value = os.environ.get("SLURM_JOB_END_TIME")
    if value:
        try:
            return float(value)
        except ValueError:
            pass
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return datetime.datetime.fromisoformat(out).timestamp()  # naive: the local time, as squeue prints
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def settings_hash(settings: dict) -> str:
    """Identity of a run's recipe. Epoch counts and compute resources are left out, so that a
    run can be extended (more epochs) or moved (other threads/workers) and still resume."""
    def recipe(value):
        if isinstance(value, dict):
            return {k: recipe(v) for k, v in value.items() if k not in ("epochs", "resources")}
        return value

    return hashlib.sha256(json.dumps(recipe(settings), sort_keys=True).encode()).hexdigest()[:16]


def rng_state(generators=None) -> dict:
    """Global RNG states, plus those of the stage's own ``generators`` (name -> torch.Generator)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "generators": {name: g.get_state() for name, g in (generators or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators=None) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})  # states written before stages had generators of their own lack it
    for name, g in (generators or {}).items():
        if name in saved:
            g.set_state(saved[name])


class Trainer:
    """Runs ``epochs`` epochs of ``step`` over ``loader``, resumably."""

    def __init__(self, model, run_dir, settings: dict, epochs: int, lr_steps=(), lr=1e-3, weight_decay=1e-5,
                 device=torch.device("cpu"), param_groups=None, inputs=(), checkpoint_minutes=None,
                 generators=None, stop_margin_minutes=3.0):
        """``param_groups``: Adam's groups (e.g. a lower lr for a backbone), default every trainable
        parameter at ``lr``. ``inputs``: files the run starts from (checkpoints); a state saved from
        other contents of them is not resumed. ``checkpoint_minutes``: also save within an epoch this
        often (None: at epoch ends and on signals only). ``generators``: the stage's own RNGs
        (name -> torch.Generator), saved and restored with the global ones. ``stop_margin_minutes``: under
        SLURM, save and stop (:class:`Preempted`) this long before the job's end time
        (:func:`job_end_time`), should no signal come."""
        self.model, self.device, self.epochs = model, device, epochs
        self.run_dir = Path(run_dir)
        self.state_path = self.run_dir / "state.pt"
        self.previous_path = self.run_dir / "state.prev.pt"
        self.settings_id = settings_hash({**settings, "inputs": [sha256(path) for path in inputs]})
        self.checkpoint_s = None if checkpoint_minutes is None else 60.0 * checkpoint_minutes
        self.generators = generators or {}
        groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        self.optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=list(lr_steps), gamma=0.1)
        self.epoch = 0  # first epoch still to run
        self.position = {"step": 0, "totals": {}, "clips": 0}  # progress within self.epoch
        self._stop_signal = None
        self.stop_margin_s = 60.0 * stop_margin_minutes
        end = job_end_time()
        self.deadline = None if end is None else end - self.stop_margin_s
        if end is not None:
            log.info(f"SLURM job ends at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(end))}: the state is "
                     f"saved and the job stops {self.stop_margin_s:.0f} s before")
        self.lock = None
        if distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.lock = OwnerLock(self.run_dir / "lock", what=f"a trainer on {self.run_dir}")
        self.resume()

    # -- state ---------------------------------------------------------------------------
    def unwrapped(self):
        return getattr(self.model, "module", self.model)

    def save_state(self) -> None:
        """Write ``state.pt``, keeping the one it replaces as ``state.prev.pt``."""
        if not distributed.is_main():
            return
        state = {
            "model": self.unwrapped().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "position": self.position,
            "rng": rng_state(self.generators),
            "settings": self.settings_id,
        }
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)
            if self.state_path.exists():
                self.state_path.replace(self.previous_path)

    def _load(self, path):
        """The state at ``path``, or None with a message naming the file when it does not load."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            missing = {"model", "optimizer", "scheduler", "epoch", "rng", "settings"} - set(state)
            if missing:
                raise KeyError(f"no {', '.join(sorted(missing))}")
            return state
        except Exception as error:  # a torn or foreign file: any failure means "not this one"
            log.warning(f"{path} does not load ({type(error).__name__}: {error})")
            return None

    def resume(self) -> None:
        """Continue from ``state.pt`` (or ``state.prev.pt`` when it does not load) if written with the
        same settings."""
        candidates = [p for p in (self.state_path, self.previous_path) if p.exists()]
        state, used = None, None
        for path in candidates:
            state = self._load(path)
            if state is not None:
                used = path
                break
        if state is None:
            if candidates:
                self._set_aside(candidates, "broken")
                log.warning(f"no state of {' or '.join(map(str, candidates))} loads: starting afresh")
            return
        if used != self.state_path:
            log.warning(f"falling back to the previous state {used}")
        if state["settings"] != self.settings_id:  # other settings or other starting checkpoints
            kept = self._set_aside(candidates, "stale")
            log.warning(f"settings changed since {used} was written: starting afresh (kept as {', '.join(kept)})")
            return
        self.unwrapped().load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # States of per-epoch checkpointing (older coclr) have no position: the epoch starts over.
        self.epoch, self.position = state["epoch"], state.get("position", self.position)
        set_rng_state(state["rng"], self.generators)
        log.info(f"resumed from {used} at epoch {self.epoch}, step {self.position['step']}")

    def _set_aside(self, paths, why) -> list:
        kept = [str(p.with_name(f"{p.stem}.{why}-{int(time.time())}.pt")) for p in paths]
        if distributed.is_main():
            for path, new in zip(paths, kept):
                path.rename(new)
        return kept

    # -- signals -------------------------------------------------------------------------
    @contextlib.contextmanager
    def preemptible(self):
        """Turn SIGTERM/SIGUSR1 into a save-and-exit at the next step boundary."""
        def note(signum, frame):
            self._stop_signal = signum

        previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGUSR1)}
        die_with_parent(signal.SIGTERM)  # a dead job shell, too, lets the trainer save first
        try:
            yield
        finally:
            die_with_parent(signal.SIGKILL)
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _check_preempted(self) -> None:
        out_of_time = self.deadline is not None and time.time() >= self.deadline
        stop = self._stop_signal is not None
        if distributed.any_process(stop or out_of_time):  # all ranks stop at the same step
            self.save_state()
            why = "received a stop signal" if stop else \
                f"the job's end time is {self.stop_margin_s:.0f} s away (no stop signal came)"
            log.warning(f"{why}: saved {self.state_path} at epoch {self.epoch + 1}, "
                        f"step {self.position['step']}, exiting")
            raise Preempted()

    # -- loop ----------------------------------------------------------------------------
    def fit(self, loader, step, on_epoch_end=None) -> list:
        """Train to ``epochs``; return the per-epoch metrics of this run. ``loader``: a
        :func:`coclr.training.sampler.resumable_loader` (or a list of batches, the same every epoch)."""
        try:
            return self._fit(loader, step, on_epoch_end)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _fit(self, loader, step, on_epoch_end) -> list:
        history = []
        logger = EpochLogger(self.run_dir) if distributed.is_main() else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" \
            else contextlib.nullcontext()
        with self.preemptible():
            while self.epoch < self.epochs:
                self.model.train()
                totals, start, saved = self.position["totals"], time.time(), time.time()
                first = self.position["step"]
                # Progress bars on a terminal only: job logs get one summary line per epoch.
                bar = tqdm(remaining(loader, self.epoch, first), desc=f"epoch {self.epoch + 1}/{self.epochs}",
                           leave=False, file=sys.stderr, disable=True if logger is None else None)
                for i, batch in enumerate(bar, start=first):
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
                    self.position["step"] = i + 1
                    self.position["clips"] += len(batch["index"])
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                    self._check_preempted()
                    if self.checkpoint_s is not None and time.time() - saved >= self.checkpoint_s:
                        self.save_state()
                        saved = time.time()
                metrics = {key: distributed.mean_over_processes(total / n) for key, (n, total) in totals.items()}
                seconds, steps, clips = time.time() - start, self.position["step"], self.position["clips"]
                # Throughput of this run's part of the epoch (a resumed epoch counts from its restart).
                clips_per_s = distributed.mean_over_processes(
                    clips * (steps - first) / max(steps, 1) / max(seconds, 1e-9)) * distributed.world_size()
                metrics.update(epoch=self.epoch + 1, lr=self.optimizer.param_groups[0]["lr"], steps=steps,
                               clips_per_s=clips_per_s)
                self.scheduler.step()
                self.epoch += 1
                self.position = {"step": 0, "totals": {}, "clips": 0}
                if on_epoch_end is not None:
                    on_epoch_end(metrics)
                self.save_state()
                history.append(metrics)
                if logger is not None:
                    logger.log(metrics)
                    log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in metrics.items()))
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
