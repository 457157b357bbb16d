"""``python -m coclr finetune``: the whole network trained for classification.

Backbone from the checkpoint -> global average pool -> dropout (0.9) -> linear
classifier; Adam with the backbone at a tenth of the head's learning rate, both
x0.1 at ``finetune.lr_steps`` (weight decay: ``finetune.weight_decay``). Each epoch
draws one augmented window per training video (the pretraining augmentations).

Training runs in :class:`coclr.training.trainer.Trainer`, so a killed or preempted job
resumes from ``--run-dir``. The epoch is chosen by video-level top-1 on held-out
training videos (the split of the linear probe): after every epoch the held-out
accuracy is logged and the weights of the best epoch so far are kept in
``<run-dir>/best.pt``. Unlike the
probe, the network is not retrained on the whole training split at that epoch
count: it would double the cost of the most expensive evaluation. Test: dense
windows, ten crops (``finetune.ten_crop``, as the reference) or the centre crop,
class probabilities averaged per video; the held-out epochs are scored on the centre crop.
``--fuse`` averages an RGB and a flow model's test probabilities (two-stream).
"""

import csv
import logging
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from coclr.augment import RandomColour
from coclr.batch import to_device
from coclr.clips import ClipDataset
from coclr.config import add_settings_arguments, settings_from_args
from coclr.distributed import set_threads
from coclr.errors import CoclrError
from coclr.evaluation.common import (add_model_or_fuse_arguments, dense_clips, device, evaluation_videos,
                                     fuse_probabilities, holdout_split, method_name, per_video_mean,
                                     save_probabilities, topk_accuracy)
from coclr.evaluation.records import result_record
from coclr.ingest import require_labels
from coclr.io import atomic_path, file_record, write_json
from coclr.models import load_backbone, load_model, place
from coclr.training.sampler import resumable_loader
from coclr.training.trainer import StepResult, Trainer

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    add_model_or_fuse_arguments(parser, "--checkpoint", "model checkpoint (coclr-model/1) whose backbone is fine-tuned",
                                "fine-tuning runs")
    parser.add_argument("--method", help="row name in the results (default: the checkpoint's file name)")
    parser.add_argument("--manifest", help="manifest or split table CSV (coclr ingest, split-table)")
    parser.add_argument("--frames", nargs="*", default=[], help="frame shards (needed for an RGB model)")
    parser.add_argument("--flow", nargs="*", default=[], help="flow shards (needed for the flow view)")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--probs", help="where to save the test class probabilities (for two-stream)")
    parser.add_argument("--run-dir", help="resumable training state and logs (kept across failures)")
    parser.add_argument("--seed", type=int, default=0)
    add_settings_arguments(parser)


class Classifier(nn.Sequential):
    """backbone -> pool -> dropout -> linear; ``[0]`` is the backbone, ``[4]`` the head."""

    def __init__(self, backbone, classes, dropout):
        super().__init__(backbone, nn.AdaptiveAvgPool3d(1), nn.Flatten(1), nn.Dropout(dropout),
                         nn.Linear(backbone.out_dim, classes))


def video_probabilities(model, videos, reader, clip, view, flow_channels, ten_crop=False, batch_size=16, workers=0):
    """(videos, classes) class probabilities averaged over each video's dense windows."""
    model.eval()
    dataset = dense_clips(videos, reader, clip, flow_channels, ten_crop)
    return per_video_mean(lambda clips: model(clips).softmax(1), dataset, view, batch_size, workers)


def fine_tune(model, fit, held, reader, settings, view, flow_channels, run_dir, checkpoint, workers=0, seed=0):
    """Train on the ``fit`` videos, resumably; load the epoch with the best top-1 on ``held``.

    Returns the held-out top-1 of every epoch (this run's and any resumed one's).
    """
    tune, clip = settings["finetune"], settings["clip"]
    run_on = device()
    # The head's group first: the trainer logs the first group's lr, i.e. `finetune.lr`.
    groups = [{"params": list(model[4].parameters()), "lr": tune["lr"]},
              {"params": list(model[0].parameters()), "lr": tune["lr"] / 10}]
    trainer = Trainer(model, run_dir, settings, tune["epochs"], tune["lr_steps"], lr=tune["lr"],
                      weight_decay=tune["weight_decay"], device=run_on,
                      param_groups=groups, inputs=[checkpoint],
                      checkpoint_minutes=settings["resources"]["checkpoint_minutes"],
                      stop_margin_minutes=settings["resources"]["stop_margin_minutes"])
    samples = ClipDataset(fit, reader, clip, flow_channels)
    loader = resumable_loader(samples, tune["batch_size"], seed, workers=workers,
                              drop_last=len(samples) > tune["batch_size"], pin_memory=run_on.type == "cuda")
    # Fine-tuning colours every clip, RGB only, with luma grey (docs/model.md, departures table)
    colour, held_labels = RandomColour(grey="luma", on_flow=False), torch.tensor(held["label"].to_numpy())
    best_path = Path(run_dir) / "best.pt"

    def best_so_far():
        best = torch.load(best_path, map_location="cpu", weights_only=True) if best_path.exists() else None
        return best if best is not None and best["settings"] == trainer.settings_id else None

    resumed = best_so_far()
    best_top1 = resumed["holdout_top1"] if resumed is not None else -1.0

    def step(batch):
        batch = to_device(batch, run_on, colour)
        logits = model(batch[view])
        accuracy = (logits.argmax(1) == batch["label"]).float().mean().item() * 100
        return StepResult(F.cross_entropy(logits, batch["label"]), {"train_top1": accuracy})

    def select(metrics):
        nonlocal best_top1
        probs = video_probabilities(model, held, reader, clip, view, flow_channels, workers=workers)
        metrics["holdout_top1"] = topk_accuracy(probs, held_labels, ks=(1,))["top1"]
        if metrics["holdout_top1"] > best_top1:
            best_top1 = metrics["holdout_top1"]
            with atomic_path(best_path) as tmp:
                torch.save({"model": model.state_dict(), "holdout_top1": metrics["holdout_top1"],
                            "epoch": metrics["epoch"], "settings": trainer.settings_id}, tmp)

    trainer.fit(loader, step, on_epoch_end=select)
    model.load_state_dict(best_so_far()["model"])
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [float(row["holdout_top1"]) for row in csv.DictReader(f)]


def run(args) -> None:
    if args.fuse:
        write_json(args.out, fuse_probabilities(*args.fuse, task="finetune"))
        return
    if not (args.manifest and (args.frames or args.flow) and args.run_dir):
        raise CoclrError("fine-tuning needs --manifest, --frames (RGB model) or --flow (flow model), and --run-dir")
    settings = settings_from_args(args)
    resources = settings["resources"]
    set_threads(settings)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    start = time.time()
    checkpoint = load_model(args.checkpoint)
    view, flow_channels = checkpoint["view"], checkpoint["arch"]["in_channels"]
    manifest, videos, reader = evaluation_videos(args, view)
    require_labels(manifest["label"], args.manifest, "fine-tuning")
    train, test = videos["train"], videos["test"]
    classes = int(manifest["label"].max()) + 1
    model = place(Classifier(load_backbone(checkpoint), classes, settings["finetune"]["dropout"]), device())
    fit, held = holdout_split(train["label"], train["group"], settings["finetune"]["holdout"], args.seed)
    curve = fine_tune(model, train.iloc[fit.numpy()], train.iloc[held.numpy()], reader, settings, view, flow_channels,
                      args.run_dir, args.checkpoint, resources["workers"], args.seed)
    probs = video_probabilities(model, test, reader, settings["clip"], view, flow_channels,
                                settings["finetune"]["ten_crop"],
                                workers=resources["workers"])
    best = max(range(len(curve)), key=curve.__getitem__) + 1
    record = result_record(
        "finetune", args.method or method_name(args.checkpoint, view), view,
        topk_accuracy(probs, torch.tensor(test["label"].to_numpy())),
        [{**file_record(args.checkpoint), "meta": checkpoint["meta"]}], start,
        selection={"epochs": best, "holdout_top1": curve, "fit_videos": len(fit), "holdout_videos": len(held)},
        chosen_epoch=best, trained_epochs=len(curve),
        settings={**settings, "seed": args.seed},
        train_videos=len(train), test_videos=len(test))
    if args.probs:
        save_probabilities(args.probs, probs, torch.tensor(test["label"].to_numpy()), list(test["video_id"]), record)
    write_json(args.out, record)
    log.info(f"fine-tune {record['method']} {view}: top-1 {record['metrics']['top1']:.1f} "
             f"(epoch {best} of {len(curve)}) -> {args.out}")
