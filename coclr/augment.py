"""Clip augmentations and the tensor layout the networks see.

One random draw per clip: every frame of a clip gets the same crop, flip and
colour change, and the RGB and flow of a clip share crop and flip. Colour
transforms come from ``torchvision.transforms.v2``, which applies one draw to
all frames of a (T, C, H, W) video tensor.

Two deliberate differences from the reference code, both behind options:
- a horizontal flip negates the x component of flow (the reference did not,
  so flipped clips had motion pointing the wrong way); ``flip_negates_flow_x``;
- resizing a flow crop scales the vectors by the resize factor, so flow stays
  in pixels of the network's input.
"""

import math
import random

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
FLOW_BOUND = 20.0  # pixels; the storage clip range, also used to scale network input


def sample_crop(height, width, area=(0.2, 1.0), ratio=(3 / 4, 4 / 3), rng=random):
    """A random-resized-crop box (top, left, h, w), as Inception-style training draws it."""
    for _ in range(10):
        target = height * width * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(height, width)  # fall back to the central square
    return (height - side) // 2, (width - side) // 2, side, side


def centre_crop_box(height, width):
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def crop_rgb(frames, box, size, flip):
    """uint8 (T, H, W, 3) -> float (T, 3, size, size) in [0, 1]."""
    video = frames.permute(0, 3, 1, 2).float().div_(255)
    video = F.resized_crop(video, *box, [size, size], antialias=True)
    return F.horizontal_flip(video) if flip else video


def crop_flow(flow, box, size, flip, negate_x=True):
    """Flow (T, H, W, 2) in pixels -> (T, 2, size, size) in pixels of the resized crop."""
    top, left, h, w = box
    field = F.resized_crop(flow.permute(0, 3, 1, 2), *box, [size, size], antialias=False)
    field = field * torch.tensor([size / w, size / h]).view(1, 2, 1, 1)
    if flip:
        field = F.horizontal_flip(field)
        if negate_x:
            field[:, 0].neg_()
    return field


def colour_transform(size):
    """The notes' colour augmentations; one draw per call, shared by all frames."""
    kernel = max(3, (size // 10) | 1)
    return v2.Compose([
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
    ])


def rgb_input(video):
    """(T, 3, H, W) in [0, 1] -> normalised (3, T, H, W) network input."""
    video = F.normalize(video, RGB_MEAN, RGB_STD)
    return video.permute(1, 0, 2, 3).contiguous()


def flow_input(field, channels=2):
    """(T, 2, H, W) pixels -> (C, T, H, W) network input.

    2 channels: (x, y) / 20. 3 channels: the released checkpoints' layout, the
    uint8-quantised image (128, y, x) normalised like RGB.
    """
    if channels == 2:
        return (field / FLOW_BOUND).clamp_(-1, 1).permute(1, 0, 2, 3).contiguous()
    quantised = ((field.clamp(-FLOW_BOUND, FLOW_BOUND) + FLOW_BOUND) * (255 / (2 * FLOW_BOUND))).round() / 255
    image = torch.stack([torch.full_like(quantised[:, 0], 128 / 255), quantised[:, 1], quantised[:, 0]], dim=1)
    return rgb_input(image)


class ClipAugment:
    """Random crop, flip and colour for a clip's RGB and/or flow, drawn once per clip."""

    def __init__(self, size, crop_area=(0.2, 1.0), flow_channels=2, flip_negates_flow_x=True, train=True):
        self.size, self.crop_area, self.train = size, tuple(crop_area), train
        self.flow_channels, self.negate_x = flow_channels, flip_negates_flow_x
        self.colour = colour_transform(size)

    def __call__(self, rgb=None, flow=None):
        """rgb uint8 (T, H, W, 3) and/or flow (T, H, W, 2) pixels -> network inputs (C, T, S, S)."""
        height, width = (rgb if rgb is not None else flow).shape[1:3]
        if self.train:
            return self.apply(sample_crop(height, width, self.crop_area), random.random() < 0.5, rgb, flow)
        return self.apply(centre_crop_box(height, width), False, rgb, flow)

    def apply(self, box, flip, rgb=None, flow=None):
        """One given crop box and flip (plus, in training, a colour draw) -> network inputs."""
        out = {}
        if rgb is not None:
            video = crop_rgb(rgb, box, self.size, flip)
            out["rgb"] = rgb_input(self.colour(video) if self.train else video)
        if flow is not None:
            out["flow"] = flow_input(crop_flow(flow, box, self.size, flip, self.negate_x), self.flow_channels)
        return out
