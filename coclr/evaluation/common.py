"""What the evaluation entry points share.

- the evaluation videos (train and test split) and their clip datasets, centre
  crop or ten crops, with outputs averaged per video over dense windows;
- the held-out part of the training split on which every choice is made;
- top-k accuracy, run records and two-stream fusion of class probabilities.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from coclr.batch import to_device
from coclr.clips import ClipReader, DenseClipDataset, usable_videos, window_indices
from coclr.errors import CoclrError
from coclr.shards import flow_store, frame_store
from coclr.io import atomic_path, file_record
from coclr.evaluation.records import result_record
from coclr.naming import TWO_STREAM, parse_model_name

SPLITS = ("train", "test")
TEN_CROP_SIDE = 7 / 8  # crop side as a fraction of the short side: corners differ from the centre


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def method_name(checkpoint, view) -> str:
    """Row name of a model file: ``models/ucf101/coclr_c2_rgb.pt`` -> ``coclr_c2``; a file not named
    ``<method>_<view>`` (coclr/naming.py) is its own row name."""
    name = Path(checkpoint).stem
    try:
        method, named_view = parse_model_name(name)
    except ValueError:
        return name
    return method if named_view == view else name


# -- videos and clips --------------------------------------------------------------------

def add_video_arguments(parser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest or split table CSV (coclr ingest, split-table)")
    parser.add_argument("--frames", nargs="*", default=[], help="frame shards (needed for the RGB view)")
    parser.add_argument("--flow", nargs="*", default=[], help="flow shards (needed for the flow view)")
    parser.add_argument("--ten-crop", action="store_true", help="ten crops per window instead of the centre crop")


def evaluation_videos(args, view):
    """(manifest, {split: rows}, reader of ``view``).

    A view needs only its own shards. The flow shards hold exactly the videos of
    their frame shards, so RGB and flow models see the same videos (two-stream);
    given both, both stores decide which videos are usable.
    """
    if view == "flow" and not args.flow:
        raise CoclrError("the flow view needs flow shards: pass --flow data/<dataset>/flow/shard_*.h5")
    if view == "rgb" and not args.frames:
        raise CoclrError("the RGB view needs frame shards: pass --frames data/<dataset>/frames/shard_*.h5")
    stores = {"rgb": frame_store(args.frames) if args.frames else None,
              "flow": flow_store(args.flow) if args.flow else None}
    manifest = pd.read_csv(args.manifest)
    videos = {split: usable_videos(manifest, split, [s for s in stores.values() if s]) for split in SPLITS}
    for split, rows in videos.items():
        if rows.empty:
            raise CoclrError(f"no usable {split} videos in {args.manifest}: check the frame and flow shards")
    reader = ClipReader(frames=stores["rgb"]) if view == "rgb" else ClipReader(flow=stores["flow"])
    return manifest, videos, reader


def ten_crop_boxes(height, width):
    """Four corners and the centre, each a square of 7/8 of the short side."""
    side = max(1, round(min(height, width) * TEN_CROP_SIDE))
    corners = [(0, 0), (0, width - side), (height - side, 0), (height - side, width - side)]
    centre = ((height - side) // 2, (width - side) // 2)
    return [(top, left, side, side) for top, left in [*corners, centre]]


class TenCropClips(DenseClipDataset):
    """Dense windows as 10 crops each (5 boxes, each also mirrored): items are (10, C, T, S, S)."""

    def __getitem__(self, index):
        position, start, length = self.windows[index]
        video_id = self.videos["video_id"].iloc[position]
        raw = self.reader.read(video_id, window_indices(start, self.frames, self.stride, length))
        height, width = next(iter(raw.values())).shape[1:3]
        crops = [self.augment.apply(box, flip, **raw) for box in ten_crop_boxes(height, width) for flip in (False, True)]
        return {**{view: torch.stack([c[view] for c in crops]) for view in raw}, "video": position}


def dense_clips(videos, reader, clip, flow_channels, ten_crop=False) -> DenseClipDataset:
    return (TenCropClips if ten_crop else DenseClipDataset)(videos, reader, clip, flow_channels)


@torch.no_grad()
def per_video_mean(fn, dataset: DenseClipDataset, view, batch_size, workers=0, run_on=None) -> torch.Tensor:
    """``fn(clips) -> (B, D)`` over every window, averaged per video (and over crops): (videos, D)."""
    run_on = run_on or device()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=run_on.type == "cuda")
    sums = counts = None
    for batch in loader:
        clips = to_device(batch, run_on)[view]
        crops = clips.shape[1] if clips.dim() == 6 else 1
        out = fn(clips.flatten(0, 1) if clips.dim() == 6 else clips).float()
        out = out.view(len(clips), crops, -1).mean(1).cpu()
        if sums is None:
            sums, counts = torch.zeros(len(dataset.videos), out.shape[1]), torch.zeros(len(dataset.videos))
        sums.index_add_(0, batch["video"], out)
        counts.index_add_(0, batch["video"], torch.ones(len(out)))
    return sums / counts[:, None]


# -- model selection ---------------------------------------------------------------------

def holdout_split(labels, groups, fraction, seed):
    """(fit, held) indices of the training split: per class, whole groups are held out.

    Stratified: each class gives about ``fraction`` of its videos (at least one
    group, never its last one). Group-aware: clips cut from the same source video
    (UCF101's gNN) are near duplicates, and splitting them across fit and held
    out would reward memorising them, as the official train/test split avoids.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        class_groups = rng.permutation(np.unique(groups[members]))
        taken = 0
        for group in class_groups[:-1]:
            if taken >= fraction * len(members):
                break
            chosen = members[groups[members] == group]
            held.extend(chosen)
            taken += len(chosen)
    if not held:
        raise CoclrError("no training video can be held out for model selection: every class needs two groups")
    held = np.sort(np.asarray(held, dtype=int))
    fit = np.setdiff1d(np.arange(len(labels)), held)
    return torch.as_tensor(fit), torch.as_tensor(held)


# -- scores and records ------------------------------------------------------------------

def topk_accuracy(scores, labels, ks=(1, 5)) -> dict:
    """Percent of rows whose label is among the k highest scores (k capped at the class count)."""
    labels = torch.as_tensor(labels)
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"top{k}": 100.0 * hits[:, :k].any(1).float().mean().item() for k in ks}


def save_probabilities(path, probs, labels, video_ids, record) -> None:
    """Test class probabilities of one model, with its run record: the input of two-stream fusion."""
    with atomic_path(path) as tmp:
        torch.save({"probs": probs.float().cpu(), "labels": torch.as_tensor(labels), "video_ids": list(video_ids),
                    "record": record}, tmp)


def add_model_or_fuse_arguments(parser, flag, help_text, runs) -> None:
    """One model's input (``flag``), or ``--fuse RGB_PROBS FLOW_PROBS``: the test probabilities saved by
    two of the command's ``runs``, averaged (:func:`fuse_probabilities`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(flag, help=help_text)
    source.add_argument("--fuse", nargs=2, metavar=("RGB_PROBS", "FLOW_PROBS"),
                        help=f"two-stream: average the test probabilities written by two {runs}")


def fuse_probabilities(rgb_path, flow_path, task) -> dict:
    """Two-stream record: the average of the RGB and flow models' test class probabilities."""
    start = time.time()
    rgb, flow = (torch.load(p, map_location="cpu", weights_only=True) for p in (rgb_path, flow_path))
    if rgb["video_ids"] != flow["video_ids"]:
        raise CoclrError(f"{rgb_path} and {flow_path} cover different test videos: rerun their features/evaluation")
    probs = (rgb["probs"] + flow["probs"]) / 2
    return result_record(
        task, rgb["record"]["method"], TWO_STREAM, topk_accuracy(probs, rgb["labels"]),
        rgb["record"]["checkpoints"] + flow["record"]["checkpoints"], start,
        inputs={"rgb": {**file_record(rgb_path), **rgb["record"]}, "flow": {**file_record(flow_path), **flow["record"]}},
        test_videos=len(probs))
