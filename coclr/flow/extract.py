"""``python -m coclr flow``: one frame shard in, one flow shard out.

Flow ``i`` of a video lies between its frames ``i`` and ``i + 1``, so a video
of T frames gets T - 1 flow fields, stored under the same ``videos/<id>`` path
as in the frame shard; videos listed in the frame shard's ``failures`` are
skipped. The frame shard is read through :func:`coclr.shards.frame_store`; each
field is quantised and PNG-encoded (:func:`coclr.flow.quantise.encode_flow`) and a
video's fields are stored like frames (:func:`coclr.shards.write_video`). Root attributes:
``bound``, ``method``, ``parameters`` (JSON), ``encoding``, ``source``, and the
frame shard's ``failures`` passed on.
"""

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import time

import cv2
import numpy as np
import torch

from coclr.flow import METHODS, PAIRWISE, compute_flow, resolve_method
from coclr.flow.quantise import BOUND, ENCODING, encode_flow
from coclr.flow.tvl1 import TVL1Params
from coclr.io import atomic_path
from coclr.shards import create_shard, frame_store, write_video

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--frames", required=True, help="input frame shard (HDF5)")
    parser.add_argument("--out", required=True, help="output flow shard (HDF5), written atomically")
    parser.add_argument("--method", default="tvl1", choices=METHODS,
                        help="auto: tvl1_numba on the CPU, the PyTorch TV-L1 on CUDA (the fastest of each)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=batch_size_arg, default=32,
                        help="frame pairs per TV-L1 call, or 'auto' (GPU: the largest that fits, CPU: see AUTO_BATCH); "
                             "halved whenever the GPU runs out of memory")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="TV-L1 parameter override, repeatable (e.g. --param tau=0.25)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (tvl1_numba and OpenCV: pairs at once; default: torch's, or one pair at a time)")
    parser.add_argument("--compile", choices=["auto", "true", "false"], default="false",
                        help="fuse the PyTorch TV-L1 with torch.compile; auto: on CUDA, and on the CPU where a C++ "
                             "compiler exists")
    parser.add_argument("--compile-cache", default=None,
                        help="folder of torch.compile's on-disk caches, shared by jobs (only the first compiles)")


# Starting sizes of batch_size "auto" (halving on out-of-memory finds what fits on a GPU). On the
# CPU the PyTorch TV-L1 is fastest with a working set that stays in cache (4 pairs beat 32 at
# 128x171); tvl1_numba and OpenCV take their pairs one by one (`threads` at a time), so their batch
# only pools videos.
AUTO_BATCH = {("tvl1", "cuda"): 4096, ("tvl1", "cpu"): 4, ("tvl1_numba", "cpu"): 64, ("tvl1_opencv", "cpu"): 64}
CXX = ("c++", "g++", "clang++")  # what torch.compile's CPU backend builds its kernels with


def batch_size_arg(text):
    if text == "auto":
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch size must be positive or 'auto', got {text}")
    return value


class BatchSize:
    """Pairs per TV-L1 call: halved on a CUDA out-of-memory error and kept there for the rest of the job."""

    def __init__(self, size, device, method="tvl1"):
        kind = "cpu" if torch.device(device).type == "cpu" else "cuda"
        self.size = AUTO_BATCH[method, kind] if size == "auto" else int(size)

    def run(self, fn, prev, nxt):
        """``fn`` over the pairs, ``self.size`` at a time, shrinking the size until a batch fits."""
        out, start = [], 0
        while start < len(prev):
            try:
                out.append(fn(prev[start:start + self.size], nxt[start:start + self.size]))
            except torch.OutOfMemoryError:
                if self.size == 1:
                    raise
                self.size //= 2
                torch.cuda.empty_cache()
                log.warning(f"out of GPU memory: flow batch size lowered to {self.size} pairs")
                continue
            start += len(out[-1])
        return np.concatenate(out) if out else np.zeros((0, 2, *prev.shape[1:]), np.float32)


def parse_params(items) -> TVL1Params:
    """``["tau=0.2", ...]`` -> validated parameters (ValueError naming a bad item)."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        params[name.strip()] = value.strip()
    return TVL1Params.from_dict(params)


def flow_gray(frames_rgb) -> np.ndarray:
    """The flow estimator's input: RGB uint8 frames (T, H, W, 3) -> grey uint8 (T, H, W), as OpenCV's
    RGB2GRAY weighs and rounds."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames_rgb])


def pair_batches(videos, batch: BatchSize):
    """Group consecutive videos of one frame size into chunks of at most ``batch.size`` pairs.

    TV-L1 runs on whole batches, so short videos are pooled: a batch spans videos
    (a video longer than a batch makes a chunk of its own, split into batches).
    """
    chunk, pairs = [], 0
    for video_id, gray in videos:
        if chunk and (pairs + len(gray) - 1 > batch.size or gray.shape[1:] != chunk[0][1].shape[1:]):
            yield chunk
            chunk, pairs = [], 0
        chunk.append((video_id, gray))
        pairs += len(gray) - 1
    if chunk:
        yield chunk


def chunk_flow(chunk, batch: BatchSize, **kwargs) -> list:
    """Encoded flow fields of every video of a chunk, computed ``batch.size`` pairs at a time."""
    prev = np.concatenate([gray[:-1] for _, gray in chunk])
    nxt = np.concatenate([gray[1:] for _, gray in chunk])
    flow = batch.run(lambda a, b: compute_flow(a, b, **kwargs), prev, nxt)
    encoded = encode_flow(flow.transpose(0, 2, 3, 1))
    bounds = np.cumsum([0] + [len(gray) - 1 for _, gray in chunk])
    return [encoded[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def resolve_compile(choice, method, device) -> tuple:
    """(compile or not, why): ``auto`` compiles the PyTorch TV-L1 on CUDA and on a CPU with a C++ compiler."""
    if method != "tvl1":
        return False, f"{method} is not compiled"
    if choice != "auto":
        return choice == "true", f"--compile {choice}"
    if torch.device(device).type != "cpu":
        if importlib.util.find_spec("triton") is None:
            return False, "auto on CUDA, but triton (torch.compile's GPU backend) is not installed"
        return True, "auto on CUDA"
    compiler = os.environ.get("CXX") or next((c for c in CXX if shutil.which(c)), None)
    if compiler and shutil.which(compiler):
        return True, f"auto, C++ compiler {compiler} found"
    return False, f"auto, no C++ compiler ({', '.join(CXX)}) on PATH"


def use_compile_cache(folder) -> None:
    """Keep inductor's compiled kernels and FX graphs in ``folder``, so later jobs reuse them."""
    os.makedirs(folder, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(folder)
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = True


def flow_shard(frames_path, out, method="tvl1", device="cpu", batch_size=32, params=None, compile=False,
               threads=None) -> dict:
    """Compute the flow shard of one frame shard; returns a summary for the job log.

    ``method`` may be ``auto`` (:func:`coclr.flow.resolve_method`); ``threads``
    is passed to tvl1_numba and OpenCV (pairs at once), the PyTorch path uses torch's threads.
    """
    params, method = params or TVL1Params(), resolve_method(method, device)
    kwargs = dict(method=method, device=device, compile=compile, **dataclasses.asdict(params))
    if method in PAIRWISE:
        kwargs["threads"] = threads
    start_time, n_fields, batch = time.time(), 0, BatchSize(batch_size, device, method)
    with contextlib.closing(frame_store([frames_path])) as src, atomic_path(out) as tmp, create_shard(tmp) as dst:
        failures = src.failures()
        skipped = {f["video"] for f in failures}
        videos = ((v, flow_gray(src.read(v).numpy())) for v in src.index if v not in skipped)
        for chunk in pair_batches(videos, batch):
            for (video_id, _), encoded in zip(chunk, chunk_flow(chunk, batch, **kwargs)):
                write_video(dst, video_id, encoded, **src.attrs(video_id))
                n_fields += len(encoded)
        dst.attrs.update(
            bound=BOUND, method=method, encoding=ENCODING, source=str(frames_path),
            parameters=json.dumps(dataclasses.asdict(params)), failures=json.dumps(failures),
        )
    seconds = time.time() - start_time
    return {"fields": n_fields, "seconds": round(seconds, 1), "fields_per_s": round(n_fields / max(seconds, 1e-9), 2),
            "batch_size": batch.size}


def run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    method = resolve_method(args.method, args.device)
    compile, why = resolve_compile(args.compile, method, args.device)
    if compile and args.compile_cache:
        use_compile_cache(args.compile_cache)
    log.info(f"flow: {method} on {args.device}, {'compiled' if compile else 'eager'} ({why})")
    summary = flow_shard(args.frames, args.out, method=method, device=args.device, batch_size=args.batch_size,
                         params=parse_params(args.param), compile=compile, threads=args.threads)
    print(json.dumps(summary))  # the job's summary, machine-readable, on stdout
