"""``python -m coclr features``: one backbone feature per video, reused by probe, retrieval and plots.

The frozen backbone (eval mode: batch norm uses its running statistics) sees
dense windows of T frames (stride ``clip.eval_stride``, about T/2) over each
whole video, centre-cropped (or ten crops); the pooled outputs, taken before
the projection head, are averaged per video. ``clip.eval_pooling`` says how:
``normalised_mean`` L2-normalises each window's feature before averaging (the
authors' code), ``mean`` averages the raw features (the probe and retrieval
normalise the video's feature either way). Both poolings cost one pass and are
stored (``pooled``), so they can be compared on any features file
(experiments/pooling.py); ``features`` is the configured one. ``--random``
builds the same architecture randomly initialised (seeded): the "random init" row.

The output loads with ``torch.load(path, weights_only=True)``: a dict with
``train`` and ``test`` entries (``features`` (N, D), ``pooled`` {pooling: (N, D)},
``labels`` (N,), ``video_ids``, ``groups``, ``windows``), plus ``method``, ``view``,
``checkpoint`` (path, sha256, meta; None for random init), ``arch`` and
``settings``.
"""

import logging
import time

import torch
import torch.nn.functional as F

from coclr.config import add_settings_arguments, settings_from_args
from coclr.distributed import set_threads
from coclr.errors import CoclrError
from coclr.evaluation.common import (SPLITS, add_video_arguments, dense_clips, device, evaluation_videos,
                                     method_name, per_video_mean)
from coclr.io import atomic_path, file_record
from coclr.models import VIEWS, build_backbone, load_backbone, load_model, place, view_arch

log = logging.getLogger(__name__)

FORMAT = "coclr-features/1"


def add_arguments(parser) -> None:
    parser.add_argument("--view", choices=VIEWS, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="model checkpoint (coclr-model/1)")
    source.add_argument("--random", action="store_true", help="randomly initialised backbone of the configured arch")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed of --random")
    parser.add_argument("--method", help="row name in the results (default: random, or the checkpoint's file name)")
    add_video_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--out", required=True, help="features file to write (.pt)")
    add_settings_arguments(parser)


def backbone(args, settings):
    """(backbone, arch, checkpoint record or None) of the model to evaluate."""
    if args.random:
        torch.manual_seed(args.seed)
        arch = view_arch(args.view, settings["model"])
        return build_backbone(arch), arch, None
    checkpoint = load_model(args.checkpoint)
    if checkpoint["view"] != args.view:
        raise CoclrError(f"{args.checkpoint} is a {checkpoint['view']} model, not {args.view}: check --view")
    return load_backbone(checkpoint), checkpoint["arch"], {**file_record(args.checkpoint), "meta": checkpoint["meta"]}


POOLINGS = ("normalised_mean", "mean")


def pooled(net):
    """The feature of a batch of clips: the backbone output averaged over time and space (no projection head)."""
    return lambda clips: net(clips).mean(dim=(2, 3, 4))


def video_features(net, dataset, view, batch_size, workers=0) -> dict:
    """Per-video features under each of ``POOLINGS``, from one pass over the windows of ``dataset``.

    ``normalised_mean`` L2-normalises each window's feature before averaging (the
    authors'), ``mean`` averages the raw features (``clip.eval_pooling`` picks one).
    """
    window = pooled(net)

    def both(clips):
        features = window(clips).float()
        return torch.cat([F.normalize(features, dim=1), features], dim=1)

    normalised, raw = per_video_mean(both, dataset, view, batch_size, workers).chunk(2, dim=1)
    return {"normalised_mean": normalised.contiguous(), "mean": raw.contiguous()}


def extract(net, videos, reader, clip, view, flow_channels, ten_crop=False, batch_size=16, workers=0) -> dict:
    """Per-video average of the pooled backbone output over dense windows (and crops), for the rows of
    ``videos``: both poolings of POOLINGS from one pass, ``features`` the configured one."""
    net = place(net, device()).eval()
    dataset = dense_clips(videos, reader, clip, flow_channels, ten_crop)
    pooled_features = video_features(net, dataset, view, batch_size, workers)
    return {"features": pooled_features[clip["eval_pooling"]], "pooled": pooled_features,
            "labels": torch.tensor(videos["label"].to_numpy()),
            "video_ids": list(videos["video_id"]), "groups": [str(g) for g in videos["group"]],
            "windows": len(dataset)}


def run(args) -> None:
    settings = settings_from_args(args)
    resources = settings["resources"]
    set_threads(settings)
    start = time.time()
    net, arch, checkpoint = backbone(args, settings)
    manifest, videos, reader = evaluation_videos(args, args.view)
    result = {
        "format": FORMAT,
        "method": args.method or ("random" if args.random else method_name(args.checkpoint, args.view)),
        "view": args.view, "checkpoint": checkpoint, "arch": arch, "seed": args.seed if args.random else None,
        "settings": settings, "ten_crop": args.ten_crop, "num_classes": int(manifest["label"].max()) + 1,
    }
    for split in SPLITS:
        result[split] = extract(net, videos[split], reader, settings["clip"], args.view, arch["in_channels"],
                                args.ten_crop, args.batch_size, resources["workers"])
    result["wall_s"] = time.time() - start
    with atomic_path(args.out) as tmp:
        torch.save(result, tmp)
    log.info(f"{result['method']} {args.view}: {len(result['train']['video_ids'])} train and "
             f"{len(result['test']['video_ids'])} test videos, {result['train']['features'].shape[1]}-d, "
             f"{result['wall_s']:.0f} s -> {args.out}")


def load_features(path) -> dict:
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("format") != FORMAT:
        raise CoclrError(f"{path} is not a features file ({FORMAT}): build it with `python -m coclr features`")
    return data
