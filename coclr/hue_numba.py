"""The hue rotation of colour jitter on the CPU, as one compiled pass over the pixels.

:func:`coclr.augment.hue_tensors` takes about thirty passes over a batch, one per tensor
operation, and was half the colour augmentation's time on the embedded default
(docs/benchmarks.md, "The training step against its floor"). Here each pixel goes
through the same float32 operations in the same order, compiled by Numba without
fast-math (no reassociation, no fused multiply-add), so the values are the same bit
for bit (tests/test_colour.py), about twenty times faster. Compiled on first use and
cached on disk next to this module, as :mod:`coclr.flow.tvl1_numba` is.
"""

import numpy as np
import torch
from numba import njit

F = np.float32


@njit(cache=True, nogil=True, error_model="numpy")
def _rotate(video, shift, out):
    """``video`` (B, T, 3, H, W) float32 in [0, 1], ``shift`` (B,) turns -> ``out``."""
    tiny, six = F(1e-12), F(6)
    for i in range(video.shape[0]):
        for t in range(video.shape[1]):
            for y in range(video.shape[3]):
                for x in range(video.shape[4]):
                    r, g, b = video[i, t, 0, y, x], video[i, t, 1, y, x], video[i, t, 2, y, x]
                    value = max(max(r, g), b)
                    delta = value - min(min(r, g), b)
                    saturation = delta / max(value, tiny)
                    scale = max(delta, tiny)
                    rc, gc, bc = (value - r) / scale, (value - g) / scale, (value - b) / scale
                    if value == r:
                        hue = bc - gc
                    elif value == g:
                        hue = (F(2) + rc) - bc
                    else:
                        hue = (F(4) + gc) - rc
                    hue = hue / six + shift[i]
                    sector = (hue - np.floor(hue)) * six
                    chroma = value * saturation
                    for c, n in ((0, F(5)), (1, F(3)), (2, F(1))):
                        k = sector + n
                        if k >= six:
                            k = k - six
                        out[i, t, c, y, x] = value - min(max(min(k, F(4) - k), F(0)), F(1)) * chroma
    return out


def rotate_hue(video: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """:func:`coclr.augment.hue_tensors` of a CPU batch (B, T, 3, H, W), ``shift`` (B, 1, 1, 1, 1)."""
    video = video.contiguous()
    out = torch.empty_like(video)
    _rotate(video.numpy(), shift.reshape(len(video)).to(video.dtype).numpy(), out.numpy())
    return out
