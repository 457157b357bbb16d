"""TV-L1 throughput and accuracy, PyTorch against OpenCV, plus the flow storage options.

    python benchmarks/flow.py [--pairs 32] [--repeats 2] [--batch-size 32]

Prints markdown tables: pairs/s and mean end-point error (EPE) against the
known flow of procedural pairs (:mod:`coclr.flow.synthetic`) at 128x171 and
256x340, for OpenCV (its default threads), PyTorch eager and compiled on CPU,
and on CUDA when present; then bytes and error of each storage encoding.
Each timing is the best of ``--repeats`` runs, so that other load on the
machine inflates it as little as possible. OpenMP threads are told to sleep
rather than spin while waiting (``OMP_WAIT_POLICY=PASSIVE``, unless set):
on a shared 2-core machine spinning threads stall each other's barriers.
"""

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the torch import
import resource
import tempfile
import time

import cv2  # noqa: E402
import h5py
import numpy as np
import torch

from coclr.flow import compute_flow
from coclr.flow.quantise import dequantise, quantise
from coclr.flow.synthetic import endpoint_error, make_pairs

SIZES = ((128, 171), (256, 340))


def timed(fn, repeats):
    """(best seconds, result) of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def in_batches(prev, nxt, batch_size, **kwargs):
    return np.concatenate([compute_flow(prev[i : i + batch_size], nxt[i : i + batch_size], **kwargs)
                           for i in range(0, len(prev), batch_size)])


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput_rows(args):
    rows = []
    for height, width in SIZES:
        n = args.pairs if height == 128 else max(args.pairs // 4, 2)
        prev, nxt, truth = make_pairs(n, height, width, seed=11)
        before = rss_mib()
        seconds, eager = timed(lambda: in_batches(prev, nxt, args.batch_size), args.repeats)
        peak = (rss_mib() - before) / min(n, args.batch_size)  # first growth of the peak: eager working set
        cv_seconds, ref = timed(lambda: compute_flow(prev, nxt, method="tvl1_opencv"), args.repeats)
        start = time.perf_counter()
        in_batches(prev[:2], nxt[:2], args.batch_size, compile=True)
        compile_s = time.perf_counter() - start
        c_seconds, compiled = timed(lambda: in_batches(prev, nxt, args.batch_size, compile=True), args.repeats)
        size = f"{height}x{width}"
        rows.append((size, f"OpenCV CPU ({cv2.getNumThreads()} threads)", n / cv_seconds, endpoint_error(ref, truth), 0.0, "-"))
        rows.append((size, f"torch CPU eager ({torch.get_num_threads()} threads)", n / seconds,
                     endpoint_error(eager, truth), endpoint_error(eager, ref), f"{peak:.1f} MiB (RSS growth)"))
        rows.append((size, f"torch CPU compiled (compile {compile_s:.0f} s)", n / c_seconds,
                     endpoint_error(compiled, truth), endpoint_error(compiled, ref), "-"))
        if torch.cuda.is_available():
            rows += cuda_rows(size, prev, nxt, truth, ref, args)
    return rows


def cuda_rows(size, prev, nxt, truth, ref, args):
    """Large batches (the pairs repeated) on the GPU, eager and compiled."""
    reps = max(1, args.cuda_batch // len(prev))
    big_prev, big_nxt = (torch.from_numpy(np.tile(x, (reps, 1, 1))).cuda() for x in (prev, nxt))
    rows = []
    for compiled in (False, True):
        compute_flow(big_prev[:8], big_nxt[:8], compile=compiled)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

        def run():
            out = compute_flow(big_prev, big_nxt, compile=compiled)
            torch.cuda.synchronize()
            return out

        seconds, flow = timed(run, args.repeats)
        flow = flow[: len(prev)].cpu().numpy()
        peak = torch.cuda.max_memory_allocated() / len(big_prev) / 2**20
        rows.append((size, f"torch CUDA {'compiled' if compiled else 'eager'} (batch {len(big_prev)})",
                     len(big_prev) / seconds, endpoint_error(flow, truth), endpoint_error(flow, ref), f"{peak:.2f} MiB"))
    return rows


def encoding_rows(flow):
    """Bytes per field and error of each encoding of quantised flow (N, 2, H, W)."""
    codes = quantise(flow.transpose(0, 2, 3, 1))
    exact = np.abs(dequantise(codes) - np.clip(flow.transpose(0, 2, 3, 1), -20, 20)).mean()
    side = np.concatenate([codes[..., 0], codes[..., 1]], axis=2)
    rows = [("raw uint8", codes[0].nbytes, exact, 0)]
    for name, compression, opts in (("raw uint8 + gzip 4", "gzip", 4), ("raw uint8 + lzf", "lzf", None)):
        path = os.path.join(tempfile.mkdtemp(), "f.h5")
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=codes, chunks=(1, *codes.shape[1:]), compression=compression, compression_opts=opts)
        rows.append((name, os.path.getsize(path) / len(codes), exact, 0))
    for name, ext, params in (("PNG level 1", ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
                              ("PNG level 9", ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]),
                              ("JPEG q95", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]),
                              ("JPEG q90", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])):
        encoded = [cv2.imencode(ext, s, params)[1] for s in side]
        decoded = np.stack([cv2.imdecode(b, cv2.IMREAD_GRAYSCALE) for b in encoded])
        error = np.abs(dequantise(decoded) - dequantise(side)).mean() + exact
        rows.append((name, np.mean([len(b) for b in encoded]), error, int(np.abs(decoded.astype(int) - side).max())))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cuda-batch", type=int, default=1024)
    args = parser.parse_args()
    print("| size | implementation | pairs/s | EPE vs truth (px) | EPE vs OpenCV (px) | peak memory per pair |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for size, name, rate, epe, diff, memory in throughput_rows(args):
        print(f"| {size} | {name} | {rate:.2f} | {epe:.4f} | {diff:.4f} | {memory} |", flush=True)
    prev, nxt, _ = make_pairs(20, 128, 171, seed=11)
    print("\n| encoding (128x171 TV-L1 flow) | bytes per field | mean error (px) | max error (steps) |")
    print("| --- | ---: | ---: | ---: |")
    for name, size, error, steps in encoding_rows(compute_flow(prev, nxt)):
        print(f"| {name} | {size:.0f} | {error:.4f} | {steps} |")


if __name__ == "__main__":
    main()
