"""Frame pairs with known optical flow, made procedurally, to measure a flow estimator (tests/test_flow.py).

A flow estimator can only be judged against ground truth, and real video has
none. Here a textured scene (1/f noise, the spectrum of natural images, plus
a few sharp-edged shapes) is rendered larger than the frame; the next frame is
its centre crop and the previous frame samples it at ``p + flow(p)``, so
``prev(p) = nxt(p + flow(p))`` holds exactly, in OpenCV's convention. Flow is
a translation plus a smooth field (affine part and low-frequency noise).
"""

import cv2
import numpy as np

MARGIN = 24  # pixels of scene beyond every edge, so prev never samples outside it


def _scene(rng, h, w):
    """A float image in [0, 255] with natural-image statistics and a few edges."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius**1.6
    spectrum[0, 0] = 0.0
    img = np.fft.irfft2(spectrum, s=(h, w))
    img = (img - img.mean()) / img.std() * 40.0 + 128.0
    for _ in range(rng.integers(4, 9)):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        value = float(rng.uniform(20, 235))
        if rng.random() < 0.5:
            axes = (int(rng.integers(5, w // 6)), int(rng.integers(5, h // 6)))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, value, -1, cv2.LINE_AA)
        else:
            size = np.array([rng.integers(5, w // 5), rng.integers(5, h // 5)])
            cv2.rectangle(img, centre, tuple(int(v) for v in np.array(centre) + size), value, -1, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.float32)


def _smooth_field(rng, h, w, magnitude):
    """Flow (2, h, w): translation + affine + low-frequency noise, max norm about ``magnitude``."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = (xs - w / 2) / w, (ys - h / 2) / h
    a = rng.normal(size=(2, 3))
    field = np.stack([a[0, 0] + a[0, 1] * xs + a[0, 2] * ys, a[1, 0] + a[1, 1] * xs + a[1, 2] * ys])
    coarse = rng.normal(size=(2, 4, 5)).astype(np.float32)
    field += np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse])
    norm = np.sqrt((field**2).sum(0)).max()
    return (field * magnitude / norm).astype(np.float32)


def make_pair(seed, height=128, width=171, magnitude=5.0, noise=2.0):
    """One pair ``(prev, nxt, flow)``: uint8 (H, W) frames and float32 (2, H, W) true flow."""
    rng = np.random.default_rng(seed)
    scene = _scene(rng, height + 2 * MARGIN, width + 2 * MARGIN)
    flow = _smooth_field(rng, height, width, magnitude)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    prev = cv2.remap(scene, xs + MARGIN + flow[0], ys + MARGIN + flow[1], cv2.INTER_CUBIC)
    nxt = scene[MARGIN:MARGIN + height, MARGIN:MARGIN + width]

    def to_uint8(img):
        return np.clip(np.rint(img + rng.normal(scale=noise, size=img.shape)), 0, 255).astype(np.uint8)

    return to_uint8(prev), to_uint8(nxt), flow


def make_pairs(n, height=128, width=171, seed=0, magnitudes=(0.5, 2.0, 5.0, 10.0, 15.0)):
    """``n`` pairs as batches ``(prev, nxt, flow)`` of shapes (n, H, W), (n, H, W), (n, 2, H, W)."""
    pairs = [make_pair(seed * 100003 + i, height, width, magnitudes[i % len(magnitudes)]) for i in range(n)]
    return tuple(np.stack(parts) for parts in zip(*pairs))


def endpoint_error(flow, truth):
    """Mean end-point error in pixels over all pairs and pixels; flows are (N, 2, H, W)."""
    return float(np.sqrt(((np.asarray(flow) - np.asarray(truth)) ** 2).sum(1)).mean())
