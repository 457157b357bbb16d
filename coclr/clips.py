"""Clip datasets over the frame and flow shards.

Training draws random windows of T frames and augments each independently:
fine-tuning one a video (:class:`ClipDataset`), contrastive learning a pair
(:class:`TwoClipDataset`): two windows (they may overlap), or, as the reference
does for half its pairs, one window augmented twice. RGB and flow of one window
share frames, crop and flip. Evaluation walks dense windows over the
whole video (:class:`DenseClipDataset`).

Flow i lies between frames i and i+1, so a video of N frames has N - 1 flow
fields and a window starting at frame s uses flow fields s .. s + (T-1)*stride.

A video shorter than a window (UCF101 has videos of 29 frames, HMDB51 shorter
ones) gives one window ending on its last frame, padded on the left by
repeating its first frame, as the reference code pads (never the last frame).
"""

import random

import pandas as pd
import torch
from torch.utils.data import Dataset

from coclr.augment import ClipAugment


def usable_videos(manifest: pd.DataFrame, split, stores) -> pd.DataFrame:
    """Rows of ``split`` whose frames (and flow) exist: failed decodes are left out."""
    rows = manifest[manifest["split"] == split]
    present = rows["video_id"].map(lambda v: all(v in store for store in stores))
    return rows[present].reset_index(drop=True)


def window_indices(start, frames, stride, length) -> list:
    """Frame indices of a window from ``start`` (negative for a short video: left padding)."""
    return [min(max(start + stride * i, 0), length - 1) for i in range(frames)]


def latest_start(frames, stride, length) -> int:
    """The last start whose window ends inside the video; negative when the video is shorter than
    the window, which then ends on the last frame and repeats the first on the left."""
    return length - ((frames - 1) * stride + 1)


def group_ids(groups: pd.Series) -> torch.Tensor:
    """Source groups as integers (the queue stores ids, not strings)."""
    return torch.as_tensor(pd.factorize(groups)[0], dtype=torch.long)


class ClipReader:
    """Reads the RGB and/or flow of one window of one video."""

    def __init__(self, frames=None, flow=None):
        self.frames, self.flow = frames, flow

    def length(self, video_id) -> int:
        """Frames a window may start in: the flow fields bound it when flow is read."""
        if self.flow is not None:
            return self.flow.num_frames(video_id)
        return self.frames.num_frames(video_id)

    def read(self, video_id, indices):
        out = {}
        if self.frames is not None:
            out["rgb"] = self.frames.read_indices(video_id, indices)
        if self.flow is not None:
            out["flow"] = self.flow.read_indices(video_id, indices)
        return out


class ClipDataset(Dataset):
    """One augmented training window of each video with its label: fine-tuning's sample, and the
    base of :class:`TwoClipDataset`, which draws two such windows."""

    def __init__(self, videos: pd.DataFrame, reader: ClipReader, clip: dict, flow_channels: int):
        self.videos, self.reader = videos, reader
        # Plain lists: a pandas row look-up per item cost more than reading a decoded clip.
        self.video_ids, self.labels = videos["video_id"].tolist(), videos["label"].astype(int).tolist()
        self.frames, self.stride = clip["frames"], clip["stride"]
        self.augment = ClipAugment.from_settings(clip, flow_channels, train=True)

    def __len__(self):
        return len(self.videos)

    def _read_window(self, video_id, length):
        last = latest_start(self.frames, self.stride, length)
        start = random.randint(0, last) if last > 0 else last
        return self.reader.read(video_id, window_indices(start, self.frames, self.stride, length))

    def _window(self, video_id, length):
        return self.augment(**self._read_window(video_id, length))

    def __getitem__(self, index):
        video_id = self.video_ids[index]
        return {**self._window(video_id, self.reader.length(video_id)), "label": self.labels[index], "index": index}


# The reference's pairs (TengdaHan/CoCLR utils/augmentation.py, TwoClipTransform): a view of a
# two-window pair gets the colour ("base") transform with this probability, else crop and flip only.
TWO_WINDOW_COLOUR_P = 0.3


def pair_colour(one_window: bool, colour_views: str, rng=random) -> tuple:
    """Which of (query, key) get the colour transforms. ``every``: both. ``reference``: a
    one-window pair colours exactly one of its views, a two-window pair each with p 0.3; so a
    view is coloured with p 0.4 when half the pairs are one-window."""
    if colour_views == "every":
        return True, True
    if one_window:
        query = rng.random() < 0.5
        return query, not query
    return rng.random() < TWO_WINDOW_COLOUR_P, rng.random() < TWO_WINDOW_COLOUR_P


class TwoClipDataset(ClipDataset):
    """The query and key of contrastive learning: two augmented windows of each video, or one
    window augmented twice (``clip.one_window``), each with a flag saying whether the colour
    transforms apply to it, and the video's source group as an integer (the queue keeps it;
    CoCLR's mining reads it)."""

    def __init__(self, videos: pd.DataFrame, reader: ClipReader, clip: dict, flow_channels=2):
        super().__init__(videos, reader, clip, flow_channels)
        self.groups = group_ids(videos["group"])
        self.one_window, self.colour_views = clip["one_window"], clip["colour_views"]

    def __getitem__(self, index):
        video_id = self.video_ids[index]
        length = self.reader.length(video_id)
        one_window = self.one_window > 0 and random.random() < self.one_window
        if one_window:
            window = self._read_window(video_id, length)
            query, key = self.augment(**window), self.augment(**window)
        else:
            query, key = self._window(video_id, length), self._window(video_id, length)
        query["coloured"], key["coloured"] = pair_colour(one_window, self.colour_views)
        return {
            "query": query,
            "key": key,
            "label": self.labels[index],
            "group": self.groups[index],
            "index": index,
        }


class DenseClipDataset(Dataset):
    """Every window (stride ``eval_stride``) of every video, centre-cropped, for evaluation.

    Items carry the video's position so window outputs can be averaged per video.
    """

    def __init__(self, videos: pd.DataFrame, reader: ClipReader, clip: dict, flow_channels: int):
        self.videos, self.reader = videos, reader
        self.frames, self.stride = clip["frames"], clip["stride"]
        self.augment = ClipAugment.from_settings(clip, flow_channels, train=False)
        step = clip["eval_stride"]
        self.windows = []
        for position, video_id in enumerate(videos["video_id"]):
            length = reader.length(video_id)
            last = latest_start(self.frames, self.stride, length)
            starts = range(0, last + 1, step) if last >= 0 else [last]
            self.windows += [(position, start, length) for start in starts]

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, index):
        position, start, length = self.windows[index]
        video_id = self.videos["video_id"].iloc[position]
        clip = self.augment(**self.reader.read(video_id, window_indices(start, self.frames, self.stride, length)))
        return {**clip, "video": position}
