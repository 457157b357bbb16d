"""The HDF5 shard format, one home: layout, attributes, writers, readers, checksums.

Layout of a shard (written by :mod:`coclr.frames` and :mod:`coclr.flow.extract`
through :func:`write_video`): one HDF5 dataset per video at ``videos/<video_id>``
(``video_id`` is the path relative to the dataset root without extension, e.g.
``Class/v_Class_g08_c01``) holding the video's encoded frames back to back as
one uint8 array; its attribute ``offsets`` (T + 1 int64) says where frame i
starts and ends. A clip is then one contiguous read, however many frames it
spans. The root attribute ``layout`` names this layout and ``failures`` lists
the videos that could not be decoded.

Every blob carries HDF5's Fletcher-32 checksum (per 64 KiB chunk), so flipped
bytes, even inside a JPEG that would still decode, fail the read. Any read
failure raises :class:`ShardError` naming the shard, the video and the command
that rebuilds the shard.

:class:`ShardStore` opens files lazily, once per process, so that every
DataLoader worker gets its own handles and no item reopens a file.
"""

import json
import logging
import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from coclr.flow.quantise import decode_flow
from coclr.io import ShardError

log = logging.getLogger(__name__)

VIDEOS = "videos"
LAYOUT = "blob+offsets/1"
CHUNK = 1 << 16  # bytes per checksummed chunk: a 32-frame clip of ~8 KiB JPEGs spans about four


def shard_error(path, video_id, error) -> ShardError:
    return ShardError(f"shard {path} is corrupt or unreadable at video {video_id} ({type(error).__name__}: {error}): "
                      f"rebuild it with `snakemake --cores all --forcerun={path}` (add your --configfile; its downstream jobs rerun too)")


def create_shard(path) -> h5py.File:
    """A new, writable shard (``libver="latest"`` lifts the 64 KiB attribute limit on long videos' offsets)."""
    f = h5py.File(path, "w", libver="latest")
    f.attrs["layout"] = LAYOUT
    f.create_group(VIDEOS)
    return f


def write_video(shard: h5py.File, video_id, encoded, **attrs) -> None:
    """Store one video's encoded frames (a list of uint8 arrays) as one blob plus frame offsets."""
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(buf) for buf in encoded])
    blob = np.concatenate(encoded) if encoded else np.empty(0, dtype=np.uint8)
    # Equal chunks of at most CHUNK bytes: HDF5 stores the last chunk whole, so a 64 KiB grid would pad each
    # video by 32 KiB on average (a quarter of a short video); equal chunks pad it by under one byte per chunk.
    # An empty blob (a video without frames) has no bytes to check, and HDF5 cannot chunk it.
    pieces = -(-len(blob) // CHUNK)
    checked = dict(chunks=(-(-len(blob) // pieces),), fletcher32=True) if len(blob) else {}
    dataset = shard[VIDEOS].create_dataset(video_id, data=blob, **checked)
    dataset.attrs.update(offsets=offsets, **attrs)


def read_encoded(dataset, start=0, stop=None, offsets=None) -> list:
    """Encoded frames ``start:stop`` of one video's dataset: one read (checksums verified), then
    zero-copy views per frame. A failed read raises :class:`ShardError`."""
    try:
        offsets = dataset.attrs["offsets"] if offsets is None else offsets
        stop = len(offsets) - 1 if stop is None else stop
        base = offsets[start]
        blob = dataset[base:offsets[stop]]
    except (OSError, KeyError, RuntimeError, ValueError) as error:
        raise shard_error(dataset.file.filename, dataset.name.removeprefix(f"/{VIDEOS}/"), error) from error
    return [blob[offsets[i] - base:offsets[i + 1] - base] for i in range(start, stop)]


def shard_failures(h5file) -> list:
    """The failure list recorded in an open shard (``[{"video", "error"}]``)."""
    return json.loads(h5file.attrs.get("failures", "[]"))


def list_videos(h5file) -> list:
    """Every video id stored in an open shard (nested groups flattened)."""
    found = []
    if VIDEOS in h5file:
        h5file[VIDEOS].visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(found)


def encode_jpegs(frames: np.ndarray, quality: int) -> list:
    """RGB uint8 frames (T, H, W, 3) -> list of JPEG byte arrays."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    encoded = []
    for frame in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        encoded.append(buf.reshape(-1))
    return encoded


def decode_jpegs(encoded) -> np.ndarray:
    """List of JPEG byte arrays -> RGB uint8 frames (T, H, W, 3), decoded straight to RGB."""
    first = cv2.imdecode(encoded[0], cv2.IMREAD_COLOR_RGB)
    frames = np.empty((len(encoded), *first.shape), dtype=np.uint8)
    frames[0] = first
    for i, buf in enumerate(encoded[1:], start=1):
        frames[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
    return frames


class ShardStore:
    """All videos of a set of shards, addressed by video id.

    The index (video id -> shard file) is built once when the store is created;
    file handles are opened on first use in each process and kept open.
    """

    def __init__(self, shard_paths, decode=None):
        self.paths = [str(p) for p in shard_paths]
        self.decode = decode_jpegs if decode is None else decode
        self.index = {}
        for i, path in enumerate(self.paths):
            if not Path(path).exists():
                raise FileNotFoundError(f"shard {path} does not exist: run the frames/flow stage for it first")
            try:
                with h5py.File(path, "r") as f:
                    layout = f.attrs.get("layout")
                    videos = list_videos(f)
            except (OSError, KeyError, RuntimeError, ValueError) as error:
                raise shard_error(path, "(index)", error) from error
            if layout != LAYOUT:
                raise ValueError(f"shard {path} was written by an older coclr (one HDF5 element per frame): "
                                 "delete it and rerun its frames/flow job (snakemake rebuilds it)")
            for video_id in videos:
                self.index[video_id] = i
        self._handles, self._videos = {}, {}
        self._pid = None

    def __contains__(self, video_id) -> bool:
        return video_id in self.index

    def __getstate__(self):
        # Handles never travel to DataLoader workers: each opens its own.
        state = self.__dict__.copy()
        state["_handles"], state["_videos"], state["_pid"] = {}, {}, None
        return state

    def _in_this_process(self) -> None:
        """Forget handles opened by another process (a forked DataLoader worker opens its own)."""
        if self._pid != os.getpid():
            self._handles, self._videos, self._pid = {}, {}, os.getpid()

    def _file(self, i) -> h5py.File:
        """The open handle of shard ``i`` in this process."""
        self._in_this_process()
        if i not in self._handles:
            self._handles[i] = h5py.File(self.paths[i], "r")
        return self._handles[i]

    def _video(self, video_id):
        """(dataset, offsets) of one video, looked up once per process."""
        self._in_this_process()
        if video_id not in self._videos:
            i = self.index[video_id]
            try:
                dataset = self._file(i)[VIDEOS][video_id]
                self._videos[video_id] = dataset, dataset.attrs["offsets"]
            except (OSError, KeyError, RuntimeError, ValueError) as error:
                raise shard_error(self.paths[i], video_id, error) from error
        return self._videos[video_id]

    def failures(self) -> list:
        """The videos the shards' writers could not store (:func:`shard_failures` of each shard, in order)."""
        found = []
        for i, path in enumerate(self.paths):
            try:
                found += shard_failures(self._file(i))
            except (OSError, KeyError, RuntimeError, ValueError) as error:
                raise shard_error(path, "(failures)", error) from error
        return found

    def attrs(self, video_id) -> dict:
        """One video's stored attributes (``fps``, ``height``, ``width``, ...) without its frame offsets."""
        return {k: v for k, v in self._video(video_id)[0].attrs.items() if k != "offsets"}

    def close(self) -> None:
        """Close this process's file handles (they reopen on the next read)."""
        for handle in self._handles.values():
            handle.close()
        self._handles, self._videos = {}, {}

    def num_frames(self, video_id) -> int:
        return len(self._video(video_id)[1]) - 1

    def encoded(self, video_id, start=0, stop=None) -> list:
        """Frames ``start:stop`` of one video as stored (encoded bytes, one uint8 array per frame)."""
        dataset, offsets = self._video(video_id)
        frames = len(offsets) - 1
        stop = frames if stop is None else stop
        if not 0 <= start < stop <= frames:
            raise IndexError(f"frames {start}:{stop} out of range for {video_id} ({frames} frames)")
        return read_encoded(dataset, start, stop, offsets)

    def read(self, video_id, start=0, stop=None):
        """Frames ``start:stop`` of one video, decoded (a torch tensor)."""
        encoded = self.encoded(video_id, start, stop)
        try:
            decoded = self.decode(encoded)
        except (cv2.error, TypeError, ValueError) as error:  # imdecode's None lands as a TypeError
            raise shard_error(self.paths[self.index[video_id]], video_id, error) from error
        return torch.from_numpy(np.ascontiguousarray(decoded))

    def read_indices(self, video_id, indices):
        """Arbitrary frames of one video (e.g. a strided window), in the given order."""
        indices = np.asarray(indices)
        lo, hi = int(indices.min()), int(indices.max()) + 1
        return self.read(video_id, lo, hi)[torch.from_numpy(indices - lo)]


class EncodedClip:
    """A clip's frames still JPEG-encoded, for decoding on the training device (``resources.jpeg_decode: device``).

    ``shape`` is the decoded clip's (T, H, W, 3), from the video's attributes, so the
    augmentation can draw its crop before any pixel is decoded; ``crop`` holds the
    (box, size, flip) it drew, applied after the decode (:func:`coclr.augment.decode_clips`).
    """

    def __init__(self, jpegs, height, width, crop=None):
        self.jpegs, self.shape, self.crop = jpegs, (len(jpegs), int(height), int(width), 3), crop


class EncodedFrameStore(ShardStore):
    """RGB frames as stored: :class:`EncodedClip` of uint8 byte tensors, decoded later on the device."""

    def read_indices(self, video_id, indices):
        indices = np.asarray(indices)
        lo, hi = int(indices.min()), int(indices.max()) + 1
        encoded = self.encoded(video_id, lo, hi)
        attrs = self._video(video_id)[0].attrs
        return EncodedClip([torch.from_numpy(encoded[i - lo]) for i in indices], attrs["height"], attrs["width"])


class DecodedInMemory:
    """The videos of a store, each decoded once and kept in memory, read like the store.

    A training job reads every video twice an epoch for tens of epochs; decoding
    (JPEG, PNG) and the HDF5 look-ups were most of the loader's time on the embedded
    data (docs/benchmarks.md, "The training step against its floor"). Built before the
    DataLoader starts its workers, which then share the memory (fork, copy on write).
    """

    def __init__(self, store: ShardStore, video_ids):
        self.videos = {video_id: store.read(video_id) for video_id in video_ids}

    def __contains__(self, video_id) -> bool:
        return video_id in self.videos

    def num_frames(self, video_id) -> int:
        return len(self.videos[video_id])

    def read_indices(self, video_id, indices):
        return self.videos[video_id].index_select(0, torch.tensor(indices))  # a copy: the cache stays as read


def decoded_mib(store: ShardStore, video_ids, channels: int, itemsize: int) -> float:
    """Memory that :class:`DecodedInMemory` would hold, from the stored sizes (nothing is decoded)."""
    total = 0
    for video_id in video_ids:
        attrs = store.attrs(video_id)
        total += store.num_frames(video_id) * int(attrs["height"]) * int(attrs["width"]) * channels * itemsize
    return total / 2 ** 20


def in_memory(store: ShardStore, video_ids, budget_mib: float, kind: str):
    """``store`` decoded into memory when its ``video_ids`` fit ``budget_mib``, else ``store`` itself
    (``kind``: ``frames``, uint8 RGB, or ``flow``, float32 (x, y))."""
    channels, itemsize = (3, 1) if kind == "frames" else (2, 4)
    if budget_mib <= 0 or isinstance(store, EncodedFrameStore):
        return store
    needed = decoded_mib(store, video_ids, channels, itemsize)
    if needed > budget_mib:
        log.warning(f"{kind}: {needed:.0f} MiB decoded exceed resources.memory_cache_mib ({budget_mib:g}): reading "
                    "the shards at every step (raise the setting to decode the videos once)")
        return store
    return DecodedInMemory(store, video_ids)


def frame_store(shard_paths, encoded=False) -> ShardStore:
    """RGB frames: uint8 tensors (T, H, W, 3), or with ``encoded`` :class:`EncodedClip` for device decoding."""
    return EncodedFrameStore(shard_paths) if encoded else ShardStore(shard_paths)


def flow_store(shard_paths) -> ShardStore:
    """Optical flow: float32 tensors (T, H, W, 2) in pixels, flow i between frames i and i+1."""
    return ShardStore(shard_paths, decode=decode_flow)
