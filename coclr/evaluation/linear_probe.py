"""``python -m coclr linear-probe``: linear classification on frozen features.

Probe: L2-normalised feature -> trainable BatchNorm1d -> Linear, Adam, cross-entropy.
The backbone is frozen, its batch norm included (eval mode), so each video's
feature is a fixed function of its frames: training on the cached per-video
features of ``coclr features`` trains the same probe as running the frozen
network inside the loop, at a tiny fraction of the cost. (The one difference
from the reference: it fed augmented clips, we feed the centre-crop dense
average, which is deterministic.)

Model selection never sees the test split: :func:`select` receives training
data only and picks learning rate, weight decay and epoch count by top-1 on a
held-out part of the training split (stratified, group-aware, seeded). The
probe is then retrained on the whole training split at that setting (cheap,
and uses every labelled video) and scored once on test, video-level top-1/5.
``--fuse`` averages the test probabilities of an RGB and a flow probe (two-stream).
"""

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from coclr.config import add_settings_arguments, settings_from_args
from coclr.distributed import set_threads
from coclr.evaluation.common import (add_model_or_fuse_arguments, device, fuse_probabilities, holdout_split,
                                     save_probabilities, topk_accuracy)
from coclr.evaluation.features import load_features
from coclr.evaluation.records import result_record
from coclr.ingest import require_labels
from coclr.io import file_record, write_json

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    add_model_or_fuse_arguments(parser, "--features", "features file of one model (coclr features)", "probes")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--probs", help="where to save the test class probabilities (for two-stream)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of training")
    add_settings_arguments(parser)


def grid(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def train(features, labels, classes, lr, weight_decay, epochs, batch_size, seed, on_epoch=None) -> nn.Module:
    """Fit a probe on L2-normalised features; ``on_epoch(epoch, probe)`` after each epoch."""
    torch.manual_seed(seed)
    run_on = device()
    x, y = features.to(run_on), torch.as_tensor(labels).to(run_on)
    probe = nn.Sequential(nn.BatchNorm1d(x.shape[1]), nn.Linear(x.shape[1], classes)).to(run_on)
    optimiser = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        probe.train()
        for batch in torch.randperm(len(x), generator=order).split(batch_size):
            if len(batch) < 2:
                continue  # batch norm needs two samples
            loss = F.cross_entropy(probe(x[batch]), y[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if on_epoch is not None:
            on_epoch(epoch, probe)
    return probe


@torch.no_grad()
def predict(probe, features) -> torch.Tensor:
    probe.eval()
    return probe(features.to(next(probe.parameters()).device)).softmax(1).cpu()


def select(features, labels, groups, classes, settings, seed) -> dict:
    """Learning rate, weight decay and epochs with the best held-out top-1 (training split only)."""
    labels = torch.as_tensor(labels)
    fit, held = holdout_split(labels, groups, settings["holdout"], seed)
    trials, best = [], None
    for lr in grid(settings["lr"]):
        for weight_decay in grid(settings["weight_decay"]):
            curve = []
            train(features[fit], labels[fit], classes, lr, weight_decay, settings["epochs"], settings["batch_size"],
                  seed, lambda _, probe: curve.append(topk_accuracy(predict(probe, features[held]), labels[held],
                                                                    ks=(1,))["top1"]))
            trials.append({"lr": lr, "weight_decay": weight_decay, "holdout_top1": curve})
            epoch = max(range(len(curve)), key=curve.__getitem__)  # first best: fewest epochs
            if best is None or curve[epoch] > best["holdout_top1"]:
                best = {"lr": lr, "weight_decay": weight_decay, "epochs": epoch + 1, "holdout_top1": curve[epoch]}
    return {**best, "fit_videos": len(fit), "holdout_videos": len(held), "trials": trials}


def probe_features(train_split: dict, test_features, classes, settings, seed=0):
    """(test probabilities, selection): select on train, retrain on all of train, predict test.

    Test labels are not an argument: nothing here can look at them.
    """
    x = F.normalize(train_split["features"], dim=1)
    selection = select(x, train_split["labels"], train_split["groups"], classes, settings, seed)
    probe = train(x, train_split["labels"], classes, selection["lr"], selection["weight_decay"],
                  selection["epochs"], settings["batch_size"], seed)
    return predict(probe, F.normalize(test_features, dim=1)), selection


def run(args) -> None:
    if args.fuse:
        write_json(args.out, fuse_probabilities(*args.fuse, task="linear_probe"))
        return
    settings = settings_from_args(args)
    set_threads(settings)
    start = time.time()
    data = load_features(args.features)
    train_split, test = data["train"], data["test"]
    require_labels(torch.cat([train_split["labels"], test["labels"]]).numpy(), args.features, "the linear probe")
    probs, selection = probe_features(train_split, test["features"], data["num_classes"], settings["linear_probe"],
                                      args.seed)
    record = result_record(
        "linear_probe", data["method"], data["view"], topk_accuracy(probs, test["labels"]),
        [data["checkpoint"]] if data["checkpoint"] else [], start,
        selection=selection, probe_epochs=selection["epochs"], features=file_record(args.features),
        settings={"linear_probe": settings["linear_probe"], "seed": args.seed, "features": data["settings"]},
        train_videos=len(train_split["video_ids"]), test_videos=len(test["video_ids"]))
    if args.probs:
        save_probabilities(args.probs, probs, test["labels"], test["video_ids"], record)
    write_json(args.out, record)
    log.info(f"linear probe {record['method']} {record['view']}: top-1 {record['metrics']['top1']:.1f} "
             f"(lr {selection['lr']}, wd {selection['weight_decay']}, {selection['epochs']} epochs) -> {args.out}")
