"""Optical flow between consecutive frames, the second view of CoCLR.

:func:`compute_flow` is the one entry point, with three implementations of
the same TV-L1 (OpenCV's ``DualTVL1OpticalFlow``, its parameters and defaults):

* ``method="tvl1_numba"``: OpenCV's algorithm with its inner iteration fused
  into one compiled loop (:mod:`coclr.flow.tvl1_numba`), one pair per thread:
  the fast path on a CPU (docs/flow.md);
* ``method="tvl1"``: this package's batched PyTorch TV-L1
  (:mod:`coclr.flow.tvl1`), a whole batch as one tensor on a CPU or a GPU;
* ``method="tvl1_opencv"``: OpenCV's own implementation, the reference the
  other two are tested against.

All take and return the same things, so any can fill a flow shard
(:mod:`coclr.flow.extract`). ``method="auto"`` takes the fastest where the
work runs: tvl1_numba on the CPU, PyTorch on CUDA.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from coclr.flow.tvl1 import TVL1Params, tvl1_flow

METHODS = ("auto", "tvl1", "tvl1_numba", "tvl1_opencv")
PAIRWISE = ("tvl1_numba", "tvl1_opencv")  # the CPU methods that take pairs one by one, `threads` at a time
MEDIAN_WINDOWS = (3, 5)  # the median filters those two can run: cv2.medianBlur's sizes for float images


def resolve_method(method, device) -> str:
    """The implementation ``method`` names on ``device``: ``auto`` is tvl1_numba on the CPU, PyTorch elsewhere."""
    if method not in METHODS:
        raise ValueError(f"unknown flow method {method!r}; known: {', '.join(METHODS)}")
    if method != "auto":
        return method
    return "tvl1_numba" if torch.device(device).type == "cpu" else "tvl1"


def _as_tensor(frames, name):
    """Validate one (N, H, W) grayscale batch and return it as a float32 tensor (values unchanged)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"{name} must be a numpy array or torch tensor, not {type(frames).__name__}")
    if frames.dtype != torch.uint8 and not frames.dtype.is_floating_point:
        raise ValueError(f"{name} must be uint8 or float in [0, 255], not {frames.dtype}")
    if frames.ndim != 3 or frames.shape[1] < 3 or frames.shape[2] < 3:
        raise ValueError(f"{name} must be a grayscale batch (N, H, W) with H, W >= 3, got shape {tuple(frames.shape)}")
    return frames.float()


def _opencv_algo(prm):
    return cv2.optflow.DualTVL1OpticalFlow_create(
        prm.tau, prm.lambda_, prm.theta, prm.scales, prm.warps, prm.epsilon,
        prm.inner_iterations, prm.outer_iterations, prm.scale_step, 0.0, prm.median_filtering,
    )


_OPENCV_THREADS = threading.Lock()  # cv2.setNumThreads is process-wide


def _map_pairs(one, prev, nxt, threads):
    """``one(a, b)`` -> (2, H, W) over the pairs of two (N, H, W) tensors, stacked into a tensor.

    ``threads=None`` runs one pair at a time (OpenCV calls on OpenCV's own
    threads). ``threads=N`` runs N pairs at once, OpenCV single-threaded: the
    pairs are independent, so no thread waits at OpenCV's per-row barriers,
    which on small frames cost more than they share (docs/flow.md). The output
    is the same either way.
    """
    pairs = list(zip(prev.cpu().numpy(), nxt.cpu().numpy()))
    if threads is None:
        flows = [one(a, b) for a, b in pairs]
    else:
        with _OPENCV_THREADS:
            before = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    flows = list(pool.map(lambda pair: one(*pair), pairs))
            finally:
                cv2.setNumThreads(before)
    return torch.from_numpy(np.stack(flows)) if flows else torch.zeros(0, 2, *prev.shape[1:])


def _opencv_pair(prm):
    """One pair through OpenCV's DualTVL1 (one algorithm object per thread of this call); it takes
    uint8, or float32 scaled to [0, 1]."""
    local = threading.local()

    def one(a, b):
        if not hasattr(local, "algo"):
            local.algo = _opencv_algo(prm)
        exact = np.array_equal(a, np.rint(a)) and np.array_equal(b, np.rint(b))
        a, b = (a.astype(np.uint8), b.astype(np.uint8)) if exact else (a / 255, b / 255)
        return local.algo.calc(a, b, None).transpose(2, 0, 1)

    return one


def compute_flow(prev, nxt, method="tvl1", device=None, compile=False, threads=None, **params):
    """Dense flow from each ``prev[i]`` to ``nxt[i]``: float32 (N, 2, H, W) in pixels, x then y.

    ``prev`` and ``nxt`` are grayscale batches (N, H, W), uint8 or float in
    [0, 255], numpy arrays or torch tensors. The flow follows OpenCV's
    convention ``prev(p) ~ nxt(p + flow(p))``. The result has the type of
    ``prev``: a numpy array for numpy input, a torch tensor (on the device the
    work ran on) for tensor input.

    ``device`` (default: ``prev``'s device, CPU for numpy) places the PyTorch
    computation; ``compile=True`` fuses its inner loop with torch.compile
    (worth it for thousands of pairs). ``threads`` (tvl1_numba and OpenCV):
    pairs run at once, one thread each; None = one pair at a time.
    ``method="auto"``: see :func:`resolve_method`. ``params`` override TV-L1 parameters
    (:class:`coclr.flow.tvl1.TVL1Params`: tau, lambda_, theta, scales,
    scale_step, warps, epsilon, inner_iterations, outer_iterations,
    median_filtering); OpenCV's defaults otherwise.
    """
    prm = TVL1Params.from_dict(params)
    as_numpy = isinstance(prev, np.ndarray)
    a, b = _as_tensor(prev, "prev"), _as_tensor(nxt, "nxt")
    if a.shape != b.shape:
        raise ValueError(f"prev and nxt must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    device = torch.device(device) if device is not None else a.device
    method = resolve_method(method, device)
    if method in PAIRWISE and prm.median_filtering > 1 and prm.median_filtering not in MEDIAN_WINDOWS:
        raise ValueError(f"TV-L1 parameter median_filtering={prm.median_filtering}: method {method} filters float "
                         f"flow with cv2.medianBlur, which takes a window of {' or '.join(map(str, MEDIAN_WINDOWS))} only; "
                         "use method tvl1 for wider ones")
    if method == "tvl1_numba":
        from coclr.flow.tvl1_numba import flow_pair  # Numba loads only where this path runs

        flow = _map_pairs(lambda x, y: flow_pair(x, y, prm), a, b, threads)
    elif method == "tvl1_opencv":
        flow = _map_pairs(_opencv_pair(prm), a, b, threads)
    else:
        flow = tvl1_flow(a.to(device), b.to(device), prm, compile=compile)
    return flow.cpu().numpy() if as_numpy else flow
