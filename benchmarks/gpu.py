"""GPU benchmark (issue #7): one command, a few minutes on one GPU.

    python -m benchmarks.gpu [--workers 0 4 8]

- TV-L1 flow pairs/s at 128x171 (UCF101 frames at short side 128) and 320x240
  (native UCF101) on consecutive frames of real footage (tests/realdata.py, the
  pairs repeated up to the batch), coclr.flow.compute_flow on cuda, torch.compile
  off and on, the batch halved from ``coclr flow``'s ``batch_size: auto`` start until it fits;
- S3D 32x128x128 training clips/s, bf16, channels_last_3d and torch.compile
  on/off (benchmarks.train's measurement);
- data-loader clips/s of the paper's clips with N workers (same source), decoding
  in the workers and, on a GPU, with ``resources.jpeg_decode: device`` (bytes from
  the workers, batched nvJPEG decode and crop on the GPU).

Without a GPU it runs everything on the CPU at reduced sizes so the script is
checked end to end; those rows say "CPU fallback" and are not GPU figures.
GPU figures go to benchmarks/measured.json (section "gpu"), which cost_model.py
prefers over its assumptions.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from benchmarks.data import machine, make_shards, print_table, record
from benchmarks.train import gpu_variants, loader_clips_per_s, pipeline_threads, preset, train_clips_per_s
from coclr.flow import compute_flow
from coclr.flow.extract import AUTO_BATCH
from tests.realdata import gray_frames

FLOW_SIZES = [(128, 171), (240, 320)]  # (height, width)


def largest_batch(measure, batch):
    """``measure(batch)`` with the largest batch (halving from ``batch``) that fits in memory."""
    while True:
        try:
            return measure(batch), batch
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            torch.cuda.empty_cache()
            batch //= 2


def real_pairs(batch, height, width):
    """``batch`` pairs of consecutive real frames at (height, width), the clip's pairs repeated."""
    frames = gray_frames("bikes", 65, size=(width, height))
    reps = -(-batch // (len(frames) - 1))
    return np.tile(frames[:-1], (reps, 1, 1))[:batch], np.tile(frames[1:], (reps, 1, 1))[:batch]


def flow_pairs_per_s(height, width, batch, device, repeats=3, compile=False) -> float:
    """Pairs/s of the pipeline's TV-L1 on a batch of real pairs, after one warm-up call (compiling)."""
    prev, nxt = real_pairs(batch, height, width)
    compute_flow(prev, nxt, method="tvl1", device=device, compile=compile)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        compute_flow(prev, nxt, method="tvl1", device=device, compile=compile)
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 4, 8], help="DataLoader workers to try")
    args = parser.parse_args()
    pipeline_threads()
    on_gpu = torch.cuda.is_available()
    device, flag = ("cuda", "") if on_gpu else ("cpu", " (CPU fallback, reduced)")
    paper = preset("paper")
    if not on_gpu:  # small enough to finish in a minute on two cores
        paper["clip"].update(frames=8, size=64)
        paper["optim"]["batch_size"] = 4
    rows, figures = [], {"flow": {}, "train": {}, "loader": {}}

    for height, width in FLOW_SIZES:
        for compile in [False, True] if on_gpu else [False]:  # `coclr flow --compile`
            rate, batch = largest_batch(
                lambda b: flow_pairs_per_s(height, width, b, device, 3 if on_gpu else 1, compile),
                AUTO_BATCH["tvl1", "cuda"] if on_gpu else 2)
            figures["flow"][f"tvl1_{width}x{height}" + "_compile" * compile] = {"pairs_per_s": rate, "batch": batch}
            rows.append([f"flow tvl1 {width}x{height}" + " compile" * compile, device + flag, batch, f"{rate:.1f}"])

    clip = paper["clip"]
    shape = f"{clip['frames']}x{clip['size']}x{clip['size']}"
    for view in ("rgb", "flow"):
        for channels_last, compile in gpu_variants() if on_gpu else [(True, False)]:
            rate = train_clips_per_s(paper, view, device, steps=5 if on_gpu else 1, warmup=3 if compile else 2,
                                     channels_last=channels_last, compile=compile)
            key = f"s3d_{shape}_{view}" + "_cl3d" * channels_last + "_compile" * compile
            figures["train"][key] = rate
            variant = ("bf16" if on_gpu else "fp32") + " cl3d" * channels_last + " compile" * compile
            rows.append([f"train S3D {view} {shape}", f"{device} {variant}{flag}", paper["optim"]["batch_size"],
                         f"{rate:.1f}"])

    with tempfile.TemporaryDirectory() as tmp:
        made = make_shards(tmp, size=128)
        for workers in args.workers:
            if workers > os.cpu_count():
                continue
            for decode_on in ([None, "cuda"] if on_gpu else [None, "cpu"]):  # resources.jpeg_decode
                rate = loader_clips_per_s(made["shards"], made["manifest"], paper, workers,
                                          batches=5 if on_gpu else 2, decode_on=decode_on)
                where = "loader" if decode_on is None else f"{decode_on} decode"
                figures["loader"][f"rgb_{shape}_workers{workers}" + ("" if decode_on is None else "_device_decode")] = rate
                rows.append([f"loader rgb {shape}, {where}", f"{workers} workers{flag}", paper["optim"]["batch_size"],
                             f"{rate:.1f}"])

    record("gpu" if on_gpu else "gpu_script_cpu_fallback", figures)
    print(f"{machine()}{'' if on_gpu else ': no GPU, every row is a reduced CPU run, not a GPU figure'}\n")
    print_table(rows, ["what", "device", "batch", "per second"])


if __name__ == "__main__":
    main()
