"""Clip datasets over the frame and flow shards.

Training draws random windows of T frames and augments each independently:
fine-tuning one a video (:class:`ClipDataset`), contrastive learning two
(:class:`TwoClipDataset`; they may overlap). RGB and flow of one window share
frames, crop and flip. Evaluation walks dense windows over the
whole video (:class:`DenseClipDataset`).

Flow i lies between frames i and i+1, so a video of N frames has N - 1 flow
fields and a window starting at frame s uses flow fields s .. s + (T-1)*stride.

A video shorter than a window (UCF101 has videos of 29 frames, HMDB51 shorter
ones) gives one window ending on its last frame, padded on the left by
repeating its first frame, as the reference code pads (never the last frame).
"""

import random

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from coclr.augment import ClipAugment


def usable_videos(manifest: pd.DataFrame, split, stores) -> pd.DataFrame:
    """Rows of ``split`` whose frames (and flow) exist: failed decodes are left out."""
    rows = manifest[manifest["split"] == split]
    present = rows["video_id"].map(lambda v: all(v in store for store in stores))
    return rows[present].reset_index(drop=True)


def window_indices(start, frames, stride, length):
    """Frame indices of a window from ``start`` (negative for a short video: left padding)."""
    return np.clip(start + stride * np.arange(frames), 0, length - 1)


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
        self.frames, self.stride = clip["frames"], clip["stride"]
        self.augment = ClipAugment(clip["size"], clip["crop_area"], flow_channels, clip["flip_negates_flow_x"], train=True)

    def __len__(self):
        return len(self.videos)

    def _window(self, video_id, length):
        last = latest_start(self.frames, self.stride, length)
        start = random.randint(0, last) if last > 0 else last
        return self.augment(**self.reader.read(video_id, window_indices(start, self.frames, self.stride, length)))

    def __getitem__(self, index):
        row = self.videos.iloc[index]
        return {**self._window(row.video_id, self.reader.length(row.video_id)), "label": int(row.label), "index": index}


class TwoClipDataset(ClipDataset):
    """Two augmented windows of each video, the query and key of contrastive learning, with the
    video's source group as an integer (the queue keeps it; CoCLR's mining reads it)."""

    def __init__(self, videos: pd.DataFrame, reader: ClipReader, clip: dict, flow_channels=2):
        super().__init__(videos, reader, clip, flow_channels)
        self.groups = group_ids(videos["group"])

    def __getitem__(self, index):
        row = self.videos.iloc[index]
        length = self.reader.length(row.video_id)
        return {
            "query": self._window(row.video_id, length),
            "key": self._window(row.video_id, length),
            "label": int(row.label),
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
        self.augment = ClipAugment(clip["size"], flow_channels=flow_channels, train=False)
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
