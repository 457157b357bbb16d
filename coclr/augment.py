"""Clip augmentations and the tensor layout the networks see.

One random draw per clip: every frame of a clip gets the same crop, flip and
colour change, and the RGB and flow of a clip share crop and flip.

The work is split where it is cheapest. The loader (CPU, per clip) crops,
flips and resizes, and hands RGB on as uint8: a quarter of the bytes to pin and
copy. :func:`rgb_input` then turns a batch into network input on the training
device, where :class:`RandomColour` applies the colour augmentations to the
whole batch at once with one draw per clip. Per clip on the CPU, colour jitter
and blur cost ~76 ms a 32x128x128 clip, too slow to feed a GPU (docs/benchmarks.md).
With ``resources.jpeg_decode: device`` the loader does not decode either: it
reads the JPEG bytes and draws the crop, and :func:`decode_clips` decodes and
crops the batch on the training device.

Two deliberate differences from the reference code, both behind options:
- a horizontal flip negates the x component of flow (the reference did not,
  so flipped clips had motion pointing the wrong way); ``flip_negates_flow_x``;
- resizing a flow crop scales the vectors by the resize factor, so flow stays
  in pixels of the network's input.
"""

import math
import random

import torch
import torch.nn.functional as nnf

from coclr.flow.quantise import BOUND  # the stored flow's range in pixels, also the scale of flow network input
from coclr.shards import EncodedClip

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


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


def resized_crop(images, box, size, antialias):
    """(N, C, H, W) box (top, left, h, w) resized bilinearly to (size, size), as torchvision's resized_crop."""
    top, left, h, w = box
    return nnf.interpolate(images[..., top:top + h, left:left + w], size=(size, size), mode="bilinear",
                           align_corners=False, antialias=antialias)


def crop_rgb(frames, box, size, flip):
    """uint8 (T, H, W, 3) -> uint8 (T, 3, size, size); an :class:`EncodedClip` keeps the crop for after its decode."""
    if isinstance(frames, EncodedClip):
        return EncodedClip(frames.jpegs, *frames.shape[1:3], crop=(box, size, flip))
    return _crop_decoded(frames.permute(0, 3, 1, 2), box, size, flip)


def _crop_decoded(video, box, size, flip):
    """(T, 3, H, W) -> (T, 3, size, size). Bilinear antialiased resizing of uint8 exists on the CPU
    only: elsewhere it runs in float, which :func:`rgb_input` takes as well (same 0-255 scale)."""
    if video.device.type != "cpu":
        video = video.float()
    video = resized_crop(video, box, size, antialias=True)
    return video.flip(-1) if flip else video


def decode_clips(clips, device):
    """JPEG clips (a list of :class:`EncodedClip`) -> their crops (N, T, 3, S, S), decoded in one batch on ``device``.

    torchvision's ``decode_jpeg`` decodes a list of images at once; on CUDA with
    nvJPEG, so the loader's CPU cores only read bytes (11 ms of CPU a paper-size clip
    otherwise). On the CPU it is the same libjpeg decode as the loader's.
    """
    # Imported here: torchvision's package import costs every training and evaluation job ~2.5 s
    # of start-up (it loads torch._dynamo), and only this path (`resources.jpeg_decode: device`) needs it.
    from torchvision.io import decode_jpeg

    frames = decode_jpeg([jpeg for clip in clips for jpeg in clip.jpegs], device=device)
    out, start = [], 0
    for clip in clips:
        video = torch.stack(frames[start:start + len(clip.jpegs)])
        start += len(clip.jpegs)
        out.append(_crop_decoded(video, *clip.crop))
    return torch.stack(out)


def crop_flow(flow, box, size, flip, negate_x=True):
    """Flow (T, H, W, 2) in pixels -> (T, 2, size, size) in pixels of the resized crop."""
    top, left, h, w = box
    field = resized_crop(flow.permute(0, 3, 1, 2), box, size, antialias=False)
    field = field * torch.tensor([size / w, size / h]).view(1, 2, 1, 1)
    if flip:
        field = field.flip(-1)
        if negate_x:
            field[:, 0].neg_()
    return field


def rgb_input(clips, colour=None):
    """uint8 (..., T, 3, H, W) -> normalised float network input (..., 3, T, H, W), coloured by ``colour``."""
    video = clips.float() / 255
    if colour is not None:
        video = colour(video)
    mean = video.new_tensor(RGB_MEAN).view(3, 1, 1)
    std = video.new_tensor(RGB_STD).view(3, 1, 1)
    return ((video - mean) / std).transpose(-4, -3)


def flow_input(field, channels=2):
    """(T, 2, H, W) pixels -> (C, T, H, W) network input.

    2 channels: (x, y) / 20. 3 channels: the released checkpoints' layout, the
    flow as the image (128, y, x) of its storage codes (:mod:`coclr.flow.quantise`),
    normalised like RGB. The codes are not rounded again: the stored flow was
    quantised once, and the crop's resize interpolates between its codes.
    """
    if channels == 2:
        return (field / BOUND).clamp_(-1, 1).permute(1, 0, 2, 3).contiguous()
    codes = (field.clamp(-BOUND, BOUND) + BOUND) * (255 / (2 * BOUND))
    image = torch.stack([torch.full_like(codes[:, 0], 128), codes[:, 1], codes[:, 0]], dim=1)
    return rgb_input(image).contiguous()


class ClipAugment:
    """Random crop and flip for a clip's RGB and/or flow, drawn once per clip (colour: :class:`RandomColour`)."""

    def __init__(self, size, crop_area=(0.2, 1.0), flow_channels=2, flip_negates_flow_x=True, train=True):
        self.size, self.crop_area, self.train = size, tuple(crop_area), train
        self.flow_channels, self.negate_x = flow_channels, flip_negates_flow_x

    def __call__(self, rgb=None, flow=None):
        """rgb uint8 (T, H, W, 3) and/or flow (T, H, W, 2) pixels -> rgb uint8 (T, 3, S, S), flow input (C, T, S, S)."""
        height, width = (rgb if rgb is not None else flow).shape[1:3]
        if self.train:
            return self.apply(sample_crop(height, width, self.crop_area), random.random() < 0.5, rgb, flow)
        return self.apply(centre_crop_box(height, width), False, rgb, flow)

    def apply(self, box, flip, rgb=None, flow=None):
        """One given crop box and flip -> the clip's RGB (uint8, for :func:`rgb_input`) and flow network input."""
        out = {}
        if rgb is not None:
            out["rgb"] = crop_rgb(rgb, box, self.size, flip)
        if flow is not None:
            out["flow"] = flow_input(crop_flow(flow, box, self.size, flip, self.negate_x), self.flow_channels)
        return out


# -- colour, per batch on the training device ---------------------------------------------

def luma(video):
    """ITU-R 601 luma of float RGB (..., 3, H, W), keeping a channel axis of 1 (the grey of colour augmentation)."""
    r, g, b = video.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def adjust_brightness(video, factor):
    return (video * factor).clamp_(0, 1)


def adjust_contrast(video, factor):
    """Blend each frame with its mean luma."""
    mean = luma(video).mean(dim=(-3, -2, -1), keepdim=True)
    return (factor * video + (1 - factor) * mean).clamp_(0, 1)


def adjust_saturation(video, factor):
    return (factor * video + (1 - factor) * luma(video)).clamp_(0, 1)


def adjust_hue(video, shift):
    """Rotate the hue by ``shift`` turns in HSV, as torchvision does (elementwise, no table lookups)."""
    value = video.amax(dim=-3, keepdim=True)
    delta = value - video.amin(dim=-3, keepdim=True)
    saturation = delta / value.clamp_min(1e-12)  # grey pixels: delta 0, so saturation 0 and hue irrelevant
    rc, gc, bc = ((value - video) / delta.clamp_min(1e-12)).unbind(-3)
    r, g, _ = video.unbind(-3)
    top = value.squeeze(-3)
    hue = torch.where(top == r, bc - gc, torch.where(top == g, 2 + rc - bc, 4 + gc - rc)).unsqueeze(-3) / 6 + shift
    sector = (hue - hue.floor()) * 6  # hue in sixths of a turn, in [0, 6)
    # channel c of an HSV colour: v - v s clamp(min(k, 4 - k), 0, 1), k = (n_c + sector) mod 6, n = 5, 3, 1
    k = video.new_tensor([5.0, 3.0, 1.0]).view(3, 1, 1) + sector
    k = k - 6 * (k >= 6)
    return value - value * saturation * torch.minimum(k, 4 - k).clamp_(0, 1)


def gaussian_blur(video, sigma, kernel):
    """Separable Gaussian blur of (B, T, 3, H, W) with one ``sigma`` per clip, reflect padding."""
    taps = torch.linspace(-(kernel - 1) / 2, (kernel - 1) / 2, kernel, device=video.device)
    weights = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)
    weights = weights / weights.sum(1, keepdim=True)
    b, t, c, h, w = video.shape
    weights = weights.repeat_interleave(t * c, dim=0)  # one kernel per (clip, frame, channel) plane
    planes = nnf.pad(video.reshape(1, b * t * c, h, w), [kernel // 2] * 4, mode="reflect")
    planes = nnf.conv2d(planes, weights.view(-1, 1, 1, kernel), groups=b * t * c)
    planes = nnf.conv2d(planes, weights.view(-1, 1, kernel, 1), groups=b * t * c)
    return planes.view(b, t, c, h, w)


class RandomColour:
    """The notes' colour augmentations on a batch (B, T, 3, H, W) in [0, 1], one draw per clip.

    Colour jitter (brightness, contrast, saturation 0.4, hue 0.1) with p 0.8,
    grayscale with p 0.2, Gaussian blur (sigma 0.1-2) with p 0.5. As in
    torchvision's ColorJitter the four jitters come in a random order; here the
    order is drawn once per batch (each clip still draws its own factors).
    """

    def __init__(self, jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=0.8, p_gray=0.2, p_blur=0.5, sigma=(0.1, 2.0)):
        self.jitter, self.p_jitter, self.p_gray, self.p_blur, self.sigma = jitter, p_jitter, p_gray, p_blur, sigma

    def __call__(self, video):
        n, dev = len(video), video.device
        kernel = max(3, (min(video.shape[-2:]) // 10) | 1)  # a tenth of the clip's side, odd

        def draw(p):
            return torch.rand(n, device=dev) < p

        def factor(mask, low, high, identity):
            value = torch.empty(n, device=dev).uniform_(low, high)
            return torch.where(mask, value, identity).view(n, 1, 1, 1, 1)

        jittered = draw(self.p_jitter)
        b, c, s, h = self.jitter
        steps = [lambda v: adjust_brightness(v, factor(jittered, 1 - b, 1 + b, 1.0)),
                 lambda v: adjust_contrast(v, factor(jittered, 1 - c, 1 + c, 1.0)),
                 lambda v: adjust_saturation(v, factor(jittered, 1 - s, 1 + s, 1.0)),
                 lambda v: torch.where(jittered.view(n, 1, 1, 1, 1), adjust_hue(v, factor(jittered, -h, h, 0.0)), v)]
        for step in torch.randperm(4).tolist():
            video = steps[step](video)
        video = torch.where(draw(self.p_gray).view(n, 1, 1, 1, 1), luma(video).expand_as(video), video)
        # a sigma of 1e-3 gives the kernel (0, ..., 1, ..., 0): clips not drawn for blur pass unchanged
        sigma = torch.where(draw(self.p_blur), torch.empty(n, device=dev).uniform_(*self.sigma), 1e-3)
        return gaussian_blur(video, sigma, kernel)
