"""Optical flow between consecutive frames, the second view of CoCLR.

:func:`compute_flow` is the one entry point: ``method="tvl1"`` is this
package's batched PyTorch TV-L1 (:mod:`coclr.flow.tvl1`, CPU or CUDA),
``method="tvl1_opencv"`` is OpenCV's own implementation, kept as the
reference the PyTorch one is tested against. Both take and return the same
things, so either can fill a flow shard (:mod:`coclr.flow.extract`).
``method="auto"`` takes the faster of the two where the work runs: OpenCV on
the CPU (measured faster there on real footage, docs/flow.md), PyTorch on CUDA.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from coclr.flow.tvl1 import TVL1Params, tvl1_flow

METHODS = ("auto", "tvl1", "tvl1_opencv")


def resolve_method(method, device) -> str:
    """The implementation ``method`` names on ``device``: ``auto`` is OpenCV on the CPU, PyTorch elsewhere."""
    if method not in METHODS:
        raise ValueError(f"unknown flow method {method!r}; known: {', '.join(METHODS)}")
    if method != "auto":
        return method
    return "tvl1_opencv" if torch.device(device).type == "cpu" else "tvl1"


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


def _opencv(prev, nxt, prm, threads=None):
    """OpenCV's DualTVL1 (it takes uint8, or float32 scaled to [0, 1]).

    ``threads=None`` runs one pair at a time with OpenCV's own threads (its
    default). ``threads=N`` runs N pairs at once, each single-threaded: the
    pairs are independent, so no thread waits at OpenCV's per-row barriers,
    which on small frames cost more than they share (docs/flow.md). The output
    is the same either way.
    """
    def one(pair, local=threading.local()):
        if not hasattr(local, "algo"):
            local.algo = _opencv_algo(prm)
        a, b = pair
        exact = np.array_equal(a, np.rint(a)) and np.array_equal(b, np.rint(b))
        a, b = (a.astype(np.uint8), b.astype(np.uint8)) if exact else (a / 255, b / 255)
        return local.algo.calc(a, b, None).transpose(2, 0, 1)

    pairs = list(zip(prev.cpu().numpy(), nxt.cpu().numpy()))
    if threads is None:
        flows = list(map(one, pairs))
    else:
        with _OPENCV_THREADS:
            before = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    flows = list(pool.map(one, pairs))
            finally:
                cv2.setNumThreads(before)
    return torch.from_numpy(np.stack(flows)) if flows else torch.zeros(0, 2, *prev.shape[1:])


def compute_flow(prev, nxt, method="tvl1", device=None, compile=False, threads=None, **params):
    """Dense flow from each ``prev[i]`` to ``nxt[i]``: float32 (N, 2, H, W) in pixels, x then y.

    ``prev`` and ``nxt`` are grayscale batches (N, H, W), uint8 or float in
    [0, 255], numpy arrays or torch tensors. The flow follows OpenCV's
    convention ``prev(p) ~ nxt(p + flow(p))``. The result has the type of
    ``prev``: a numpy array for numpy input, a torch tensor (on the device the
    work ran on) for tensor input.

    ``device`` (default: ``prev``'s device, CPU for numpy) places the PyTorch
    computation; ``compile=True`` fuses its inner loop with torch.compile
    (worth it for thousands of pairs). ``threads`` (OpenCV only): pairs run at
    once, one thread each; None = one pair at a time on OpenCV's own threads.
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
    if resolve_method(method, device) == "tvl1_opencv":
        flow = _opencv(a, b, prm, threads)
    else:
        flow = tvl1_flow(a.to(device), b.to(device), prm, compile=compile)
    return flow.cpu().numpy() if as_numpy else flow
