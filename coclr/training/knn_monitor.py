"""The online kNN monitor: how well a pretraining stage's features separate the classes, while it trains.

Every ``knn_monitor.every`` epochs the trained view's backbone embeds, as ``coclr features`` does
(centre crop, dense windows, ``clip.eval_pooling``), a bounded subset of the labelled training
videos and of the held-out share the linear probe selects on (``holdout_split`` with
``linear_probe.holdout`` and the stage's seed: whole source groups, so no held-out video has a
near duplicate among the neighbours). Each held-out video is classified by a weighted vote of its
k nearest training videos: cosine similarity, a neighbour weighs exp(sim / T), k = 20, T = 0.07
(the kNN evaluation of DINO and solo-learn). Test videos are never read.

Labels reach this number only. The monitor runs after an epoch's last step, in eval mode without
gradients, and restores the RNG states and the train/eval modes it found, so a stage trains bit for
bit the same with or without it on CPU, and resumes exactly (tests/test_knn_monitor.py).
"""

import contextlib
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from coclr import distributed
from coclr.errors import CoclrError
from coclr.evaluation.common import holdout_split
from coclr.evaluation.features import extract
from coclr.ingest import UNLABELLED
from coclr.training.trainer import rng_state, set_rng_state

log = logging.getLogger(__name__)

K = 20
TEMPERATURE = 0.07
# Sections the monitor reads and training does not: left out of a run's recipe (a changed one resumes).
SECTIONS = ("knn_monitor", "linear_probe")


def weighted_knn_top1(bank, bank_labels, queries, query_labels, k=K, temperature=TEMPERATURE) -> float:
    """Share of ``queries`` whose label gets the largest sum of exp(cos / T) over their k nearest ``bank`` rows."""
    similarity = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T
    nearest, index = similarity.topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(queries), int(bank_labels.max()) + 1)
    votes.scatter_add_(1, bank_labels[index], (nearest / temperature).exp())
    return (votes.argmax(1) == query_labels).float().mean().item()


@contextlib.contextmanager
def untouched(module):
    """Whatever runs inside, the RNG states and every submodule's train/eval mode end as they were."""
    rng, modes = rng_state(), [(m, m.training) for m in module.modules()]
    try:
        yield
    finally:
        set_rng_state(rng)
        for m, training in modes:
            m.train(training)


class KnnMonitor:
    """A trainer's ``on_epoch_end``: adds ``knn_top1`` (in [0, 1]) to the metrics at epochs every, 2 x every, ...
    Under DDP only the main process computes it (the others go on to the next epoch's first step)."""

    def __init__(self, backbone, bank, queries, reader, settings, view, flow_channels):
        self.backbone, self.bank, self.queries, self.reader = backbone, bank, queries, reader
        self.view, self.flow_channels = view, flow_channels
        self.every, self.clip = settings["knn_monitor"]["every"], settings["clip"]
        # Windows per forward pass: the training batch fits, and without gradients it needs less memory.
        self.batch_size, self.workers = settings["optim"]["batch_size"], settings["resources"]["workers"]

    def __call__(self, metrics: dict) -> None:
        if metrics["epoch"] % self.every == 0 and distributed.is_main():
            start = time.time()
            metrics["knn_top1"] = self.top1()
            log.info(f"kNN monitor: top-1 {metrics['knn_top1']:.3f} of {len(self.queries)} held-out training videos "
                     f"against {len(self.bank)}, {time.time() - start:.1f} s")

    def top1(self) -> float:
        with untouched(self.backbone):
            bank, queries = [extract(self.backbone, videos, self.reader, self.clip, self.view, self.flow_channels,
                                     batch_size=self.batch_size, workers=self.workers)
                             for videos in (self.bank, self.queries)]
        return weighted_knn_top1(bank["features"], bank["labels"], queries["features"], queries["labels"])


def build(backbone, videos, reader, settings, view, flow_channels, seed):
    """The monitor of a stage training ``backbone`` on ``videos`` (its training split), or None (with one
    line saying why) when ``knn_monitor.every`` is 0, the videos are unlabelled or none can be held out."""
    limits = settings["knn_monitor"]
    if limits["every"] == 0:
        return None
    if (videos["label"] == UNLABELLED).any():
        log.info("kNN monitor off: the training videos are unlabelled")
        return None
    try:
        fit, held = holdout_split(videos["label"], videos["group"], settings["linear_probe"]["holdout"], seed)
    except CoclrError as error:  # the split's own message names what is missing
        log.info(f"kNN monitor off: {error}")
        return None
    rng = np.random.default_rng(seed)  # its own generator: training's RNGs are not drawn from

    def subset(indices, limit):
        return videos.iloc[np.sort(rng.permutation(indices.numpy())[:limit])]

    return KnnMonitor(backbone, subset(fit, limits["bank_videos"]), subset(held, limits["query_videos"]), reader,
                      settings, view, flow_channels)
