"""Plumbing shared by the training entry points (``pretrain`` and ``cotrain``).

Arguments, data, the MoCo model and the final export are the same for every
stage; only the loss step differs, and that lives in the stage's own module.
"""

import logging
import random
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from coclr import distributed
from coclr.batch import collate
from coclr.clips import ClipReader, TwoClipDataset, usable_videos
from coclr.config import add_settings_arguments, settings_from_args
from coclr.errors import CoclrError
from coclr.shards import flow_store, frame_store, in_memory
from coclr.models import place, save_model, view_arch
from coclr.moco import MoCo
from coclr.training import knn_monitor
from coclr.training.sampler import resumable_loader
from coclr.training.trainer import Trainer

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--view", choices=["rgb", "flow"], required=True)
    parser.add_argument("--manifest", required=True, help="manifest CSV (coclr ingest)")
    parser.add_argument("--frames", nargs="*", default=[], help="frame shards (read by the RGB view)")
    parser.add_argument("--flow", nargs="*", default=[], help="flow shards (read by the flow view)")
    parser.add_argument("--run-dir", required=True, help="resumable state and logs (kept across failures)")
    parser.add_argument("--out", required=True, help="final model checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, sample order and augmentation")
    add_settings_arguments(parser)


@dataclass
class StageContext:
    """What :func:`prepare` sets up for a training stage, and the other steps of the stage read."""

    settings: dict  # the resolved settings (config.settings_from_args)
    rank: int  # this process's rank; 0 in a single process
    world: int  # processes of the job (torchrun), 1 alone
    device: torch.device
    videos: pd.DataFrame  # the training videos whose clips every view of the stage can read
    reader: ClipReader  # their clips, from the shards of the stage's views
    start: float  # time.time() when the stage started: the exported model's wall_s


def prepare(args, views) -> StageContext:
    """Settings, process group, threads, seeds and the training videos of ``views``."""
    settings = settings_from_args(args)
    resources = settings["resources"]
    distributed.set_threads(settings)
    rank, world, device = distributed.setup()
    random.seed(args.seed + rank)
    torch.manual_seed(args.seed + rank)
    # Each view reads its own shards only, so a single-view stage runs without the other's.
    if "rgb" in views and not args.frames:
        raise CoclrError("the rgb view needs frame shards: pass --frames data/<dataset>/frames/shard_*.h5")
    if "flow" in views and not args.flow:
        raise CoclrError("the flow view needs flow shards: pass --flow data/<dataset>/flow/shard_*.h5")
    on_device = resources["jpeg_decode"] == "device"  # the loader hands on JPEG bytes (coclr.batch)
    stores = {"rgb": frame_store(args.frames, encoded=on_device) if "rgb" in views else None,
              "flow": flow_store(args.flow) if "flow" in views else None}
    manifest = pd.read_csv(args.manifest)
    videos = usable_videos(manifest, "train", [s for s in stores.values() if s is not None])
    if videos.empty:
        raise CoclrError(f"no usable training videos in {args.manifest}: check the frame and flow shards")
    for view, kind in (("rgb", "frames"), ("flow", "flow")):
        if stores[view] is not None:
            stores[view] = in_memory(stores[view], videos["video_id"], resources["memory_cache_mib"], kind)
    reader = ClipReader(frames=stores["rgb"], flow=stores["flow"])
    return StageContext(settings=settings, rank=rank, world=world, device=device, videos=videos,
                        reader=reader, start=time.time())


def loader(ctx: StageContext, seed):
    """DataLoader of query/key clip pairs; under DDP each process sees its share of the videos.
    Resumable within an epoch: order and augmentation follow from ``seed``, epoch and index."""
    settings = ctx.settings
    dataset = TwoClipDataset(ctx.videos, ctx.reader, settings["clip"], settings["model"]["flow_channels"])
    batch = settings["optim"]["batch_size"]
    if len(dataset) < batch * ctx.world:
        raise CoclrError(f"{len(dataset)} training videos are fewer than one batch ({batch} x {ctx.world} "
                         "processes): lower presets.<preset>.optim.batch_size")
    data = resumable_loader(dataset, batch, seed, workers=settings["resources"]["workers"],
                            rank=ctx.rank, world=ctx.world, pin_memory=ctx.device.type == "cuda", collate=collate)
    log.info(f"{len(dataset)} videos, batch {batch} per process x {ctx.world} = {batch * ctx.world} global, "
             f"lr {settings['optim']['lr']}")
    return data


def build_moco(view, settings, device, other_view_dim=None) -> MoCo:
    moco_settings = settings["moco"]
    model = MoCo(view_arch(view, settings["model"]), dim=moco_settings["dim"], queue_size=moco_settings["queue_size"],
                 momentum=moco_settings["momentum"], temperature=moco_settings["temperature"],
                 other_view_dim=other_view_dim)
    return place(model, device)


def trainer(ctx: StageContext, model, args, schedule: dict, inputs=(), generators=None) -> Trainer:
    """The resumable trainer of a stage (``inputs``: the checkpoints it starts from, ``generators``:
    the stage's own RNGs); the model is wrapped in DDP when there are several processes."""
    wrapped = DistributedDataParallel(model) if ctx.world > 1 else model
    optim = ctx.settings["optim"]
    # The monitor only reads the model: its settings are not the recipe's, so changing them still resumes.
    recipe = {key: value for key, value in ctx.settings.items() if key not in knn_monitor.SECTIONS}
    recipe["seed"] = args.seed  # another seed is another run: its state never resumes this one's
    return Trainer(wrapped, args.run_dir, recipe, schedule["epochs"], schedule["lr_steps"],
                   lr=optim["lr"], weight_decay=optim["weight_decay"], device=ctx.device, inputs=inputs,
                   checkpoint_minutes=ctx.settings["resources"]["checkpoint_minutes"], generators=generators,
                   stop_margin_minutes=ctx.settings["resources"]["stop_margin_minutes"])


def monitor(ctx: StageContext, model, args):
    """The kNN monitor of the trained view's backbone (None when off or unlabelled), reading that view's
    shards as evaluation does (RGB frames decoded in the loader whatever ``resources.jpeg_decode`` says)."""
    if args.view == "rgb":
        reader = ClipReader(frames=frame_store(args.frames))
    else:
        reader = ClipReader(flow=flow_store(args.flow))
    return knn_monitor.build(model.encoder_q[0], ctx.videos, reader, ctx.settings, args.view,
                             view_arch(args.view, ctx.settings["model"])["in_channels"], args.seed)


def export(ctx: StageContext, model, args, trainer, history, extra_meta=None) -> None:
    """The stage's declared output: the final weights, written once training is complete."""
    if distributed.is_main():
        meta = {"epochs": trainer.epoch, "seed": args.seed, "wall_s": time.time() - ctx.start,
                "final": history[-1] if history else {}, **(extra_meta or {})}
        save_model(args.out, model.state_dict(), args.view, view_arch(args.view, ctx.settings["model"]), meta)
    distributed.barrier()
    distributed.cleanup()
