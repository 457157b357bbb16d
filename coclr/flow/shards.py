"""``python -m coclr flow``: one frame shard in, one flow shard out.

Flow ``i`` of a video lies between its frames ``i`` and ``i + 1``, so a video
of T frames gets T - 1 flow fields, stored under the same ``videos/<id>`` path
as in the frame shard; videos listed in the frame shard's ``failures`` are
skipped. Each field is quantised and PNG-encoded (:mod:`coclr.flow.quantise`),
one variable-length uint8 element per field, like frames. Root attributes:
``bound``, ``method``, ``parameters`` (JSON), ``encoding``, ``source``, and the
frame shard's ``failures`` passed on.
"""

import argparse
import dataclasses
import json
import time

import cv2
import h5py
import numpy as np
import torch

from coclr.data import VIDEOS, decode_jpegs, list_videos, shard_failures
from coclr.flow import compute_flow
from coclr.flow.quantise import BOUND, ENCODING, decode_field, dequantise, encode_field, quantise
from coclr.flow.tvl1 import TVL1Params
from coclr.io import atomic_path


def add_arguments(parser) -> None:
    parser.add_argument("--frames", required=True, help="input frame shard (HDF5)")
    parser.add_argument("--out", required=True, help="output flow shard (HDF5), written atomically")
    parser.add_argument("--method", default="tvl1", choices=["tvl1", "tvl1_opencv"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=32, help="frame pairs per TV-L1 call")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="TV-L1 parameter override, repeatable (e.g. --param tau=0.25)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="fuse the inner loop with torch.compile (one-off cost of about a minute)")


def parse_params(items) -> TVL1Params:
    """``["tau=0.2", ...]`` -> validated parameters (ValueError naming a bad item)."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        params[name.strip()] = value.strip()
    return TVL1Params.from_dict(params)


def grayscale(frames_rgb) -> np.ndarray:
    """RGB uint8 (T, H, W, 3) -> uint8 (T, H, W), with OpenCV's RGB2GRAY weights and rounding."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames_rgb])


def pair_batches(videos, batch_size):
    """Group consecutive videos of one frame size into chunks of at most ``batch_size`` pairs.

    TV-L1 runs on whole batches, so short videos are pooled: a batch spans videos
    (a video longer than a batch makes a chunk of its own, split into batches).
    """
    chunk, pairs = [], 0
    for video_id, gray in videos:
        if chunk and (pairs + len(gray) - 1 > batch_size or gray.shape[1:] != chunk[0][1].shape[1:]):
            yield chunk
            chunk, pairs = [], 0
        chunk.append((video_id, gray))
        pairs += len(gray) - 1
    if chunk:
        yield chunk


def chunk_flow(chunk, batch_size, **kwargs) -> list:
    """Encoded flow fields of every video of a chunk, computed ``batch_size`` pairs at a time."""
    prev = np.concatenate([gray[:-1] for _, gray in chunk])
    nxt = np.concatenate([gray[1:] for _, gray in chunk])
    encoded = []
    for start in range(0, len(prev), batch_size):
        flow = compute_flow(prev[start:start + batch_size], nxt[start:start + batch_size], **kwargs)
        encoded += [encode_field(codes) for codes in quantise(flow.transpose(0, 2, 3, 1))]
    bounds = np.cumsum([0] + [len(gray) - 1 for _, gray in chunk])
    return [encoded[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def flow_shard(frames_path, out, method="tvl1", device="cpu", batch_size=32, params=None, compile=False) -> dict:
    """Compute the flow shard of one frame shard; returns a summary for the job log."""
    params = params or TVL1Params()
    kwargs = dict(method=method, device=device, compile=compile, **dataclasses.asdict(params))
    start_time, n_fields = time.time(), 0
    with h5py.File(frames_path, "r") as src, atomic_path(out) as tmp, h5py.File(tmp, "w") as dst:
        failures = shard_failures(src)
        skipped = {f["video"] for f in failures}
        group = dst.create_group(VIDEOS)
        videos = ((v, grayscale(decode_jpegs(src[VIDEOS][v][()]))) for v in list_videos(src) if v not in skipped)
        for chunk in pair_batches(videos, batch_size):
            for (video_id, _), encoded in zip(chunk, chunk_flow(chunk, batch_size, **kwargs)):
                dataset = group.create_dataset(video_id, shape=(len(encoded),), dtype=h5py.vlen_dtype(np.uint8))
                if encoded:
                    dataset[:] = encoded
                dataset.attrs.update(src[VIDEOS][video_id].attrs)
                n_fields += len(encoded)
        dst.attrs.update(
            bound=BOUND, method=method, encoding=ENCODING, source=str(frames_path),
            parameters=json.dumps(dataclasses.asdict(params)), failures=json.dumps(failures),
        )
    seconds = time.time() - start_time
    return {"fields": n_fields, "seconds": round(seconds, 1), "fields_per_s": round(n_fields / max(seconds, 1e-9), 2)}


def decode_flow(stored) -> np.ndarray:
    """Stored elements of a flow dataset -> float32 (T, H, W, 2) in pixels (used by coclr.data)."""
    return dequantise(np.stack([decode_field(buf) for buf in stored]))


def read_flow(dataset, start, stop) -> torch.Tensor:
    """Flow fields ``start:stop`` of one video's dataset -> torch.float32 (T, H, W, 2) in pixels."""
    return torch.from_numpy(decode_flow(dataset[start:stop]))


def run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = flow_shard(args.frames, args.out, method=args.method, device=args.device,
                         batch_size=args.batch_size, params=parse_params(args.param), compile=args.compile)
    print(json.dumps(summary))
