"""The test bed's data: a synthetic dataset written as AVIs, decoded back, and its TV-L1 flow.

Frames come from the AVI files (so codec artefacts reach the flow estimator, as in
the pipeline); flow is OpenCV's TV-L1 with default parameters on the decoded grey
frames, clipped to +-20 px and quantised to uint8 as the pipeline stores it. The
result is cached per design, because flow is the slow part.
"""

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from coclr import synthetic
from coclr.video import decode

CACHE = Path("/tmp/coclr_testbed")


def _flow(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T-1, H, W, 2) uint8 flow, round((f + 20) * 255 / 40)."""
    cv2.setNumThreads(1)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow = np.stack([tvl1.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])])
    return np.round((np.clip(flow, -20, 20) + 20) * 255 / 40).astype(np.uint8)


def _decode_and_flow(path: str) -> tuple[np.ndarray, np.ndarray]:
    frames = decode(path)
    return frames, _flow(frames)


def load(cfg: synthetic.Config, workers: int = 2) -> dict:
    """Arrays rgb (N,T,H,W,3), flow (N,T-1,H,W,2), label (N,) 0-based, test (N,) bool, plus timings."""
    key = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    cache = CACHE / f"data_{key}.npz"
    if cache.exists():
        return dict(np.load(cache))
    root = CACHE / f"ucf_{key}"
    t0 = time.time()
    synthetic.generate(cfg, root, workers)
    t1 = time.time()
    specs = synthetic.video_specs(cfg)
    with ProcessPoolExecutor(workers) as pool:
        out = list(pool.map(_decode_and_flow, [str(root / s.path) for s in specs], chunksize=4))
    t2 = time.time()
    data = dict(
        rgb=np.stack([o[0] for o in out]),
        flow=np.stack([o[1] for o in out]),
        label=np.array([s.label - 1 for s in specs]),
        test=np.array([synthetic.is_test(cfg, s) for s in specs]),
        seconds_generate=np.float64(t1 - t0),
        seconds_decode_flow=np.float64(t2 - t1),
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data
