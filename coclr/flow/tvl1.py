"""Batched TV-L1 optical flow in PyTorch, one code path for CPU and CUDA.

The method is the duality-based TV-L1 of Zach, Pock and Bischof (2007) with
the refinements of Wedel et al. (2009), as analysed by Sanchez Perez,
Meinhardt-Llopis and Facciolo (IPOL 2013), with the choices OpenCV's
``DualTVL1OpticalFlow`` makes, so that flow computed here can stand in for
the flow the CoCLR authors computed with OpenCV:

* pyramid: each scale is the previous one resized by ``scale_step`` with
  bilinear interpolation (no smoothing), stopping before a side drops under 16 px;
* per scale: centred gradient of the second image; ``warps`` times, the second
  image and its gradient are warped by the current flow with bicubic
  interpolation (zero outside) and the data term is linearised there;
* per warp: up to ``outer_iterations`` rounds, each a 5x5 median filter of the
  flow then up to ``inner_iterations`` of (thresholding step, primal update,
  dual projection step); a pair stops as soon as the squared change of its
  flow summed over pixels is at most ``epsilon**2 * pixels``;
* between scales the flow is resized bilinearly and divided by ``scale_step``.

A batch of pairs is one tensor. Pairs converge after different numbers of
iterations; a converged pair is frozen by a mask and, at the next stopping
test, dropped from the working batch, so it costs nothing from then on.
"""

import dataclasses
import functools

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class TVL1Params:
    """OpenCV's parameters, with OpenCV's defaults (the illumination term ``gamma`` is not offered)."""

    tau: float = 0.25  # time step of the dual update
    lambda_: float = 0.15  # weight of the data term
    theta: float = 0.3  # coupling between the flow and its auxiliary variable
    scales: int = 5
    scale_step: float = 0.8
    warps: int = 5
    epsilon: float = 0.01  # stopping threshold (pixels of RMS change per iteration)
    inner_iterations: int = 30
    outer_iterations: int = 10
    median_filtering: int = 5  # median window between rounds; 1 disables it

    def __post_init__(self):
        positive = {"tau": self.tau, "lambda_": self.lambda_, "theta": self.theta, "scales": self.scales,
                    "warps": self.warps, "inner_iterations": self.inner_iterations,
                    "outer_iterations": self.outer_iterations}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"TV-L1 parameter {name} must be positive, got {value}")
        if not 0 < self.scale_step < 1:
            raise ValueError(f"TV-L1 parameter scale_step must lie in (0, 1), got {self.scale_step}")
        if self.epsilon < 0:
            raise ValueError(f"TV-L1 parameter epsilon must be >= 0, got {self.epsilon}")
        if self.median_filtering > 1 and self.median_filtering % 2 == 0:
            raise ValueError(f"TV-L1 parameter median_filtering must be odd (or <= 1 to disable), got {self.median_filtering}")

    @classmethod
    def from_dict(cls, params):
        """Parameters from a mapping, with a ValueError naming any unknown key."""
        names = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"unknown TV-L1 parameter(s) {unknown}; known: {sorted(names)}")
        cast = {name: int if typ in (int, "int") else float for name, typ in names.items()}
        return cls(**{k: cast[k](v) for k, v in params.items()})


def _pyramid_size(height, width, step):
    """OpenCV's size rule for resizing by a factor: round to nearest."""
    return round(height * step), round(width * step)


def _resize_by(img, size, step):
    """Bilinear resize by factor ``step`` with OpenCV's pixel mapping (src = (dst + 0.5) / step - 0.5)."""
    return torch.ops.aten.upsample_bilinear2d(img, list(size), False, step, step)


def _centred_gradient(img):
    """Central differences (B, 2, H, W) of (B, 1, H, W); at the border, half the one-sided difference."""
    padded = F.pad(img, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    dy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    return torch.cat([dx, dy], dim=1)


def _forward_gradient(u):
    """Forward differences of every channel, zero on the last column/row: returns (x part, y part)."""
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def _divergence(px, py):
    """Backward-difference divergence, the negative adjoint of :func:`_forward_gradient`."""
    return (px - F.pad(px[..., :, :-1], (1, 0, 0, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def _odd_even_merge_sort(n):
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort of n inputs (n a power of two)."""
    comparators, p = [], 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return comparators


def _median_network(n):
    """A selection network for the median of n values: the output slot and (i, j, need_min, need_max) steps.

    Batcher's sorting network on the next power of two, with the padding
    wires known to hold +inf (comparisons against them resolve without work)
    and every comparison that cannot reach the middle output removed. For
    n = 25 this is 202 elementwise minimum/maximum operations over whole
    images: several times faster than sorting each window on CPU, and one
    fused kernel under torch.compile. Step ``(i, j, ...)`` puts the minimum
    of slots i and j in slot i and the maximum in slot j.
    """
    size = 1 << (n - 1).bit_length()
    slot = list(range(size))  # slot[k]: which value slot sits at network position k
    steps = []
    for i, j in _odd_even_merge_sort(size):
        if slot[j] >= n:  # the larger side holds +inf: nothing moves
            continue
        if slot[i] >= n:  # the smaller side holds +inf: the values trade places
            slot[i], slot[j] = slot[j], slot[i]
            continue
        steps.append((slot[i], slot[j]))
    output = slot[n // 2]
    needed, kept = {output}, []
    for i, j in reversed(steps):
        need_min, need_max = i in needed, j in needed
        if need_min or need_max:
            kept.append((i, j, need_min, need_max))
            needed |= {i, j}
    return output, kept[::-1]


def _median(u, size):
    """``size`` x ``size`` median of every channel, replicating the border (as cv2.medianBlur)."""
    r = size // 2
    h, w = u.shape[-2:]
    padded = F.pad(u, (r, r, r, r), mode="replicate")
    values = [padded[..., dy : dy + h, dx : dx + w] for dy in range(size) for dx in range(size)]
    output, steps = _median_network(size * size)
    for i, j, need_min, need_max in steps:
        a, b = values[i], values[j]
        if need_min:
            values[i] = torch.minimum(a, b)
        if need_max:
            values[j] = torch.maximum(a, b)
    return values[output]


def _warp(images, flow):
    """Sample ``images`` (B, C, H, W) at ``p + flow(p)`` with bicubic interpolation, zero outside.

    The sampling grid is built in float64: grid_sample takes normalised
    coordinates, and float32 rounding there would shift even a zero flow by
    about 1e-5 pixels, which the warps then amplify at the image border.
    """
    _, _, h, w = images.shape
    flow = flow.double()
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    grid = torch.stack([(xs + flow[:, 0]) * (2 / (w - 1)) - 1, (ys + flow[:, 1]) * (2 / (h - 1)) - 1], dim=-1)
    warped = F.grid_sample(images.double(), grid, mode="bicubic", padding_mode="zeros", align_corners=True)
    return warped.to(images.dtype)


def _iterate(u, p, active, i1w_grad, inv_grad_sq, rho_c, l_t, theta, taut, tolerance):
    """One inner iteration (thresholding, primal update, dual projection) of the pairs still active.

    ``u`` (B, 2, H, W) is the flow, ``p`` (B, 4, H, W) the dual variable (x
    parts of both flow components, then y parts), ``active`` (B,) which pairs
    still move. Returns the new ``u``, ``p`` and ``active``: a pair stops once
    the mean over pixels of its squared flow change is at most ``tolerance``
    (OpenCV's test, sum <= epsilon**2 * pixels, written so that the compiled
    function sees the same constant at every scale).
    """
    rho = rho_c + (i1w_grad * u).sum(1, keepdim=True)
    step = (rho * inv_grad_sq).clamp(-l_t, l_t)  # where the gradient vanishes, step is +-l_t times a zero gradient
    px, py = p[:, 0:2], p[:, 2:4]
    u_new = u - step * i1w_grad + theta * _divergence(px, py)
    ux, uy = _forward_gradient(u_new)
    norm = 1.0 + taut * torch.sqrt(ux * ux + uy * uy)
    p_new = torch.cat([(px + taut * ux) / norm, (py + taut * uy) / norm], dim=1)
    change = ((u_new - u) ** 2).sum(1).mean((1, 2))
    keep = active.view(-1, 1, 1, 1)
    return torch.where(keep, u_new, u), torch.where(keep, p_new, p), active & (change > tolerance)


# The working set never shrinks below two pairs (a converged one stays, frozen by
# the mask): torch.compile specialises a dimension of size 1, so a batch of one
# would compile the kernels a second time in the middle of a job.
_MIN_WORKING_SET = 2


@functools.lru_cache
def _kernels(compiled):
    """The hot functions (inner iteration, median), eager or compiled for all shapes into fused kernels."""
    if not compiled:
        return _iterate, _median
    return torch.compile(_iterate, dynamic=True), torch.compile(_median, dynamic=True)


def _solve_scale(i0, i1, u, prm, kernels, check_every):
    """Refine the flow ``u`` (B, 2, H, W) at one scale: ``prm.warps`` linearisations of the data term."""
    batch, _, h, w = u.shape
    i1_and_grad = torch.cat([i1, _centred_gradient(i1)], dim=1)
    p = torch.zeros(batch, 4, h, w, device=u.device, dtype=u.dtype)
    for _ in range(prm.warps):
        warped = _warp(i1_and_grad, u)
        i1w, i1w_grad = warped[:, :1], warped[:, 1:].contiguous()
        inv_grad_sq = 1.0 / (i1w_grad * i1w_grad).sum(1, keepdim=True).clamp_min(1e-20)
        rho_c = i1w - (i1w_grad * u).sum(1, keepdim=True) - i0
        u, p = _solve_warp(u, p, (i1w_grad, inv_grad_sq, rho_c), prm, kernels, check_every)
    return u


def _solve_warp(u, p, data, prm, kernels, check_every):
    """The outer/inner iterations of one warp on a working set that sheds converged pairs.

    Every ``check_every`` iterations the host looks at which pairs are still
    active (the only synchronisation); converged pairs are written back to
    the output and leave the working set. Between two looks they are frozen by
    the mask, so the result does not depend on ``check_every``.
    """
    iterate, median = kernels
    l_t, taut = prm.lambda_ * prm.theta, prm.tau / prm.theta
    u_out, p_out = u.clone(), p.clone()
    index = torch.arange(u.shape[0], device=u.device)  # batch positions of the working set
    active = torch.ones(u.shape[0], dtype=torch.bool, device=u.device)
    total = prm.outer_iterations * prm.inner_iterations
    for n in range(total):
        if n % prm.inner_iterations == 0 and prm.median_filtering > 1:
            u = torch.where(active.view(-1, 1, 1, 1), median(u, prm.median_filtering), u)
        u, p, active = iterate(u, p, active, *data, l_t, prm.theta, taut, prm.epsilon**2)
        if (n + 1) % check_every == 0 and not bool(active.all()):
            live = active.nonzero().squeeze(1)
            if live.numel() < _MIN_WORKING_SET <= len(active):  # keep a frozen pair as well
                live = torch.cat([live, (~active).nonzero()[: _MIN_WORKING_SET - live.numel()].squeeze(1)])
            if live.numel() < len(active) or not bool(active.any()):
                u_out[index], p_out[index] = u, p
                if not bool(active.any()):
                    return u_out, p_out
                index, active, u, p = index[live], active[live], u[live], p[live]
                data = tuple(t[live] for t in data)
    u_out[index], p_out[index] = u, p
    return u_out, p_out


def tvl1_flow(prev, nxt, params=None, compile=False, check_every=None):
    """TV-L1 flow (B, 2, H, W), x then y, from ``prev`` to ``nxt``: float tensors (B, H, W) in [0, 255].

    Everything runs on the inputs' device. ``compile`` fuses the inner
    iteration with torch.compile (a one-off cost of tens of seconds, then
    several times faster). ``check_every`` is how many iterations pass between
    host-side stopping tests (default: every iteration on CPU, where a test is
    free, every 10 elsewhere).
    """
    prm = params or TVL1Params()
    kernels = _kernels(compile)
    if compile and 0 < prev.shape[0] < _MIN_WORKING_SET:  # pad with copies: one set of compiled kernels
        pad = _MIN_WORKING_SET - prev.shape[0]
        flow = tvl1_flow(torch.cat([prev] + [prev[:1]] * pad), torch.cat([nxt] + [nxt[:1]] * pad), prm,
                         compile, check_every)
        return flow[: prev.shape[0]]
    if check_every is None:
        check_every = 1 if prev.device.type == "cpu" else 10
    i0s, i1s = [prev.unsqueeze(1)], [nxt.unsqueeze(1)]
    for _ in range(prm.scales - 1):
        size = _pyramid_size(*i0s[-1].shape[-2:], prm.scale_step)
        if min(size) < 16:
            break
        i0s.append(_resize_by(i0s[-1], size, prm.scale_step))
        i1s.append(_resize_by(i1s[-1], size, prm.scale_step))
    u = torch.zeros(prev.shape[0], 2, *i0s[-1].shape[-2:], device=prev.device, dtype=prev.dtype)
    for s in range(len(i0s) - 1, -1, -1):
        u = _solve_scale(i0s[s], i1s[s], u, prm, kernels, check_every)
        if s > 0:
            u = F.interpolate(u, size=i0s[s - 1].shape[-2:], mode="bilinear", align_corners=False) / prm.scale_step
    return u
