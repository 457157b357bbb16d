"""Flow as a colour image (hue = direction, saturation = magnitude), for reports.

The colour wheel is the one of the Middlebury benchmark (Baker et al., 2011):
55 hues in six ramps (red-yellow 15, yellow-green 6, green-cyan 4, cyan-blue
11, blue-magenta 13, magenta-red 6) so that perceptually distinct directions
get distinct colours; white is zero motion.
"""

import numpy as np

_RAMPS = (15, 6, 4, 11, 13, 6)  # lengths of the ramps between the six primary hues


def _colour_wheel():
    """(55, 3) RGB colours in [0, 255], going round the wheel."""
    corners = np.array([[255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255], [255, 0, 255]], float)
    ramps = []
    for k, length in enumerate(_RAMPS):
        t = np.arange(length)[:, None] / length
        ramps.append(corners[k] * (1 - t) + corners[(k + 1) % 6] * t)
    return np.concatenate(ramps)


def flow_to_rgb(flow, max_magnitude=None):
    """Flow (2, H, W) in pixels, numpy or torch -> RGB uint8 (H, W, 3).

    Magnitudes are divided by ``max_magnitude`` (default: the largest in the
    field), so several fields can share one scale.
    """
    fx, fy = np.asarray(flow, dtype=np.float64)
    radius = np.hypot(fx, fy)
    scale = max_magnitude if max_magnitude is not None else max(radius.max(), 1e-9)
    radius = radius / scale
    wheel = _colour_wheel()
    position = (np.arctan2(-fy, -fx) / np.pi + 1) / 2 * len(wheel)  # [0, 55]
    k0 = np.floor(position).astype(int) % len(wheel)
    k1 = (k0 + 1) % len(wheel)
    frac = (position - np.floor(position))[..., None]
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]
    saturated = 255 - radius[..., None].clip(max=1) * (255 - colour)  # white at zero motion
    dimmed = np.where(radius[..., None] > 1, saturated * 0.75, saturated)  # beyond the scale: darker
    return np.rint(dimmed).astype(np.uint8)
