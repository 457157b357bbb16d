"""TV-L1 on the CPU: OpenCV's algorithm with its inner loop fused into one Numba kernel.

``cv2.optflow.DualTVL1OpticalFlow`` spends its time in the inner iteration,
which it runs as seven passes over the image (thresholding, two divergences,
primal update, two forward gradients, dual update), each split into stripes
for its thread pool. Here the same iteration is one sweep, compiled by Numba:
row ``y`` gets its primal update while row ``y - 1`` gets its dual update,
which needs the new flow of rows ``y - 1`` and ``y`` only. A pair's dozen
arrays then stay in one core's cache, and pairs run on separate threads
(``threads`` at a time), so no thread waits for another.

Everything outside the inner iteration is OpenCV's own call, as its TV-L1
makes it: the pyramid and the flow's upsampling (``cv2.resize``, bilinear),
the warp of the second image and its gradient (``cv2.remap``, bicubic, zero
outside), and the median filter between rounds (``cv2.medianBlur``, which takes
float flow with a window of 3 or 5 only, as OpenCV's TV-L1 does). The method
and its parameters are those of :mod:`coclr.flow.tvl1`, whose docstring lists
them. The kernels are compiled on first use and cached on disk next to this
module (Numba's ``cache=True``): only the first job on a machine pays for
compiling (seconds).
"""

import cv2
import numpy as np
from numba import njit

# No Python error checks (a float division by zero gives inf, not an exception) and floating-point
# reassociation: both are needed for the loops to vectorise. No fast-math assumption about NaN.
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "arcp", "nsz", "reassoc"})


@njit(**_JIT)
def _data_term(i0, warped, u1, u2, gx, gy, inv_grad_sq, rho_c):
    """The data term linearised at the current flow: the warped gradient (gx, gy), 1 / its squared
    norm, and rho's constant part, from ``warped`` (H, W, 3): second image, its x and y gradient."""
    h, w = i0.shape
    for y in range(h):
        for x in range(w):
            ix, iy = warped[y, x, 1], warped[y, x, 2]
            gx[y, x], gy[y, x] = ix, iy
            inv_grad_sq[y, x] = np.float32(1) / max(ix * ix + iy * iy, np.float32(1e-20))
            rho_c[y, x] = warped[y, x, 0] - ix * u1[y, x] - iy * u2[y, x] - i0[y, x]


@njit(**_JIT)
def _primal_row(y, u1, u2, gx, gy, inv_grad_sq, rho_c, px1, py1, px2, py2, lt, theta):
    """Thresholding step and primal update of row ``y`` in place; returns its squared change.

    The divergence takes backward differences of the dual variable, zero
    beyond the first row and column; the left neighbour is carried along the
    row in a scalar, so that the loop has no branch and vectorises.
    """
    up = max(y - 1, 0)
    above = np.float32(1 if y > 0 else 0)  # no row above the first: its y parts count as zero
    left1 = left2 = np.float32(0)
    change = 0.0
    for x in range(u1.shape[1]):
        div1 = px1[y, x] - left1 + py1[y, x] - above * py1[up, x]
        div2 = px2[y, x] - left2 + py2[y, x] - above * py2[up, x]
        left1, left2 = px1[y, x], px2[y, x]
        old1, old2 = u1[y, x], u2[y, x]
        rho = rho_c[y, x] + gx[y, x] * old1 + gy[y, x] * old2
        step = min(max(rho * inv_grad_sq[y, x], -lt), lt)  # OpenCV's three thresholding cases in one
        u1[y, x] = old1 - step * gx[y, x] + theta * div1
        u2[y, x] = old2 - step * gy[y, x] + theta * div2
        change += (u1[y, x] - old1) ** 2 + (u2[y, x] - old2) ** 2
    return change


@njit(**_JIT)
def _dual_row(y, u, px, py, taut):
    """Dual projection step of row ``y`` of one flow component in place, from the forward
    differences of its new flow (zero across the last row and column)."""
    h, w = u.shape
    down = min(y + 1, h - 1)
    for x in range(w):
        right = u[y, x + 1] if x < w - 1 else u[y, x]
        dx, dy = right - u[y, x], u[down, x] - u[y, x]
        norm = np.float32(1) + taut * np.sqrt(dx * dx + dy * dy)
        px[y, x] = (px[y, x] + taut * dx) / norm
        py[y, x] = (py[y, x] + taut * dy) / norm


@njit(**_JIT)
def _iterate(u1, u2, gx, gy, inv_grad_sq, rho_c, px1, py1, px2, py2, lt, theta, taut):
    """One inner iteration in one sweep, in place; returns the mean squared change of the flow.

    Row y's primal update reads the dual variable of rows y and y - 1, so row
    y - 1's dual update follows it; it needs the new flow of rows y - 1 and y,
    which is then there.
    """
    h = u1.shape[0]
    change = 0.0
    for y in range(h + 1):
        if y < h:
            change += _primal_row(y, u1, u2, gx, gy, inv_grad_sq, rho_c, px1, py1, px2, py2, lt, theta)
        if y > 0:
            _dual_row(y - 1, u1, px1, py1, taut)
            _dual_row(y - 1, u2, px2, py2, taut)
    return change / u1.size


@njit(**_JIT)
def _inner_iterations(u1, u2, gx, gy, inv_grad_sq, rho_c, px1, py1, px2, py2, iterations, lt, theta, taut,
                      tolerance):
    """Up to ``iterations`` inner iterations; True as soon as one changes the flow by at most
    ``tolerance`` (mean squared change: OpenCV's test, sum <= epsilon^2 * pixels)."""
    for _ in range(iterations):
        if _iterate(u1, u2, gx, gy, inv_grad_sq, rho_c, px1, py1, px2, py2, lt, theta, taut) <= tolerance:
            return True
    return False


def _centred_gradient(img):
    """Central differences (x, y), half the one-sided difference at the border (OpenCV's)."""
    padded = np.pad(img, 1, mode="edge")
    return 0.5 * (padded[1:-1, 2:] - padded[1:-1, :-2]), 0.5 * (padded[2:, 1:-1] - padded[:-2, 1:-1])


def _solve_scale(i0, i1, u1, u2, prm):
    """Refine the flow (u1, u2) in place at one scale: ``prm.warps`` linearisations, each up to
    ``outer_iterations`` rounds of (median filter, up to ``inner_iterations`` iterations)."""
    h, w = i0.shape
    image_and_gradient = np.dstack([i1, *_centred_gradient(i1)])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy, inv_grad_sq, rho_c = (np.empty_like(i0) for _ in range(4))
    px1, py1, px2, py2 = (np.zeros_like(i0) for _ in range(4))
    constants = (np.float32(prm.lambda_ * prm.theta), np.float32(prm.theta), np.float32(prm.tau / prm.theta),
                 prm.epsilon**2)
    for _ in range(prm.warps):
        warped = cv2.remap(image_and_gradient, xs + u1, ys + u2, cv2.INTER_CUBIC)  # zero outside
        _data_term(i0, warped, u1, u2, gx, gy, inv_grad_sq, rho_c)
        for _ in range(prm.outer_iterations):
            if prm.median_filtering > 1:
                u1[:], u2[:] = cv2.medianBlur(u1, prm.median_filtering), cv2.medianBlur(u2, prm.median_filtering)
            if _inner_iterations(u1, u2, gx, gy, inv_grad_sq, rho_c, px1, py1, px2, py2, prm.inner_iterations,
                                 *constants):
                break


def flow_pair(prev, nxt, prm):
    """TV-L1 flow (2, H, W) float32 from ``prev`` to ``nxt``, images (H, W) in [0, 255], with the
    parameters ``prm`` (:class:`coclr.flow.tvl1.TVL1Params`; a median window of 3 or 5)."""
    i0s = [np.ascontiguousarray(prev, np.float32)]
    i1s = [np.ascontiguousarray(nxt, np.float32)]
    for _ in range(prm.scales - 1):
        i0 = cv2.resize(i0s[-1], None, fx=prm.scale_step, fy=prm.scale_step, interpolation=cv2.INTER_LINEAR)
        if min(i0.shape) < 16:
            break
        i0s.append(i0)
        i1s.append(cv2.resize(i1s[-1], None, fx=prm.scale_step, fy=prm.scale_step, interpolation=cv2.INTER_LINEAR))
    u1 = np.zeros_like(i0s[-1])
    u2 = np.zeros_like(i0s[-1])
    for s in range(len(i0s) - 1, -1, -1):
        _solve_scale(i0s[s], i1s[s], u1, u2, prm)
        if s > 0:
            size = i0s[s - 1].shape[::-1]
            u1 = cv2.resize(u1, size, interpolation=cv2.INTER_LINEAR) * np.float32(1 / prm.scale_step)
            u2 = cv2.resize(u2, size, interpolation=cv2.INTER_LINEAR) * np.float32(1 / prm.scale_step)
    return np.stack([u1, u2])
