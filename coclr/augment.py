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
from typing import NamedTuple

import torch
import torch.nn.functional as nnf

from coclr.flow.quantise import BOUND  # the stored flow's range in pixels, also the scale of flow network input
from coclr.shards import EncodedClip

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


def sample_crop(height, width, area=(0.2, 1.0), ratio=(3 / 4, 4 / 3), rng=random, kind="reference"):
    """A random-resized-crop box (top, left, h, w).

    ``reference``, as the authors' pretraining draws it: one try, aspect uniform in ``ratio``
    and then swapped with p 0.5; a box that does not fit gives the whole frame, which the
    resize then squashes to the square (about 30 % of boxes on 171x128 frames).
    ``inception``, as torchvision's RandomResizedCrop: aspect log-uniform, up to 10 tries,
    then the central square.
    """
    if kind == "reference":
        target = height * width * rng.uniform(*area)
        aspect = rng.uniform(*ratio)
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if rng.random() < 0.5:
            w, h = h, w
        if w <= width and h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        return 0, 0, height, width
    for _ in range(10):
        target = height * width * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return centre_crop_box(height, width)


def centre_crop_box(height, width):
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def resized_crop(images, box, size, antialias, mode="bilinear"):
    """(N, C, H, W) box (top, left, h, w) resized to (size, size) by ``mode`` (bilinear or bicubic),
    as torchvision's resized_crop."""
    top, left, h, w = box
    return nnf.interpolate(images[..., top:top + h, left:left + w], size=(size, size), mode=mode,
                           align_corners=False, antialias=antialias)


def crop_rgb(frames, box, size, flip, mode="bilinear"):
    """uint8 (T, H, W, 3) -> uint8 (T, 3, size, size); an :class:`EncodedClip` keeps the crop for after its decode."""
    if isinstance(frames, EncodedClip):
        return EncodedClip(frames.jpegs, *frames.shape[1:3], crop=(box, size, flip, mode))
    return _crop_decoded(frames.permute(0, 3, 1, 2), box, size, flip, mode)


def _crop_decoded(video, box, size, flip, mode="bilinear"):
    """(T, 3, H, W) -> (T, 3, size, size). Antialiased resizing of uint8 exists on the CPU
    only: elsewhere it runs in float, which :func:`rgb_input` takes as well (same 0-255 scale)."""
    if video.device.type != "cpu":
        video = video.float()
    video = resized_crop(video, box, size, antialias=True, mode=mode)
    if video.is_floating_point():
        video = video.clamp(0, 255)  # bicubic overshoots; uint8 saturates by itself
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


def crop_flow(flow, box, size, flip, negate_x=True, mode="bilinear"):
    """Flow (T, H, W, 2) in pixels -> (T, 2, size, size) in pixels of the resized crop."""
    top, left, h, w = box
    field = resized_crop(flow.permute(0, 3, 1, 2), box, size, antialias=False, mode=mode)
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
    return video.sub_(mean).div_(std).transpose(-4, -3)  # in place: ``video`` is this function's own


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
    """Random crop and flip for a clip's RGB and/or flow, drawn once per clip (colour: :class:`RandomColour`).

    ``crop``: the box's draw (:func:`sample_crop`); ``interpolation``: bicubic (the reference,
    as PIL resizes) or bilinear, for RGB and flow alike.
    """

    def __init__(self, size, crop_area=(0.2, 1.0), flow_channels=2, flip_negates_flow_x=True, train=True,
                 crop="reference", interpolation="bicubic"):
        self.size, self.crop_area, self.train = size, tuple(crop_area), train
        self.flow_channels, self.negate_x = flow_channels, flip_negates_flow_x
        self.crop, self.mode = crop, interpolation

    @classmethod
    def from_settings(cls, clip: dict, flow_channels: int, train: bool):
        """The augmentation of the ``clip`` settings (workflow/schemas/config.schema.yaml)."""
        return cls(clip["size"], clip["crop_area"], flow_channels, clip["flip_negates_flow_x"], train,
                   clip["crop"], clip["interpolation"])

    def __call__(self, rgb=None, flow=None):
        """rgb uint8 (T, H, W, 3) and/or flow (T, H, W, 2) pixels -> rgb uint8 (T, 3, S, S), flow input (C, T, S, S)."""
        height, width = (rgb if rgb is not None else flow).shape[1:3]
        if self.train:
            box = sample_crop(height, width, self.crop_area, kind=self.crop)
            return self.apply(box, random.random() < 0.5, rgb, flow)
        return self.apply(centre_crop_box(height, width), False, rgb, flow)

    def apply(self, box, flip, rgb=None, flow=None):
        """One given crop box and flip -> the clip's RGB (uint8, for :func:`rgb_input`) and flow network input."""
        out = {}
        if rgb is not None:
            out["rgb"] = crop_rgb(rgb, box, self.size, flip, self.mode)
        if flow is not None:
            field = crop_flow(flow, box, self.size, flip, self.negate_x, self.mode)
            out["flow"] = flow_input(field, self.flow_channels)
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
    """Rotate the hue of (B, T, 3, H, W) by ``shift`` (B, 1, 1, 1, 1) turns in HSV, as torchvision does.
    float32 on the CPU in one compiled pass (:mod:`coclr.hue_numba`, the same values), else :func:`hue_tensors`."""
    if video.device.type == "cpu" and video.dtype == torch.float32:
        from coclr.hue_numba import rotate_hue  # Numba loads only where this path runs

        return rotate_hue(video, shift)
    return hue_tensors(video, shift)


def hue_tensors(video, shift):
    """The hue rotation as elementwise tensor operations (no table lookups)."""
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


class ColourDraw(NamedTuple):
    """One batch's colour draw, one value per clip: applied to a clip's RGB and, with the
    reference recipe, to its flow image too (:func:`coclr.batch.to_device`)."""
    order: list  # the jitters' order, one for the batch
    factors: tuple  # (brightness, contrast, saturation, hue), each (B, 1, 1, 1, 1); identity where not jittered
    jittered: torch.Tensor  # (B,) bool
    grey: torch.Tensor  # (B,) bool
    grey_channel: torch.Tensor | None  # (B, T) the channel each frame keeps (grey kind ``channel``), else None
    blurred: torch.Tensor  # (B,) bool
    sigma: torch.Tensor  # (B,) blur sigma; 1e-3 (an identity kernel) where not blurred


class RandomColour:
    """The notes' colour augmentations on a batch (B, T, 3, H, W) in [0, 1], one draw per clip.

    Colour jitter (brightness, contrast, saturation 0.4, hue 0.1) with p 0.8,
    grey with p 0.2, Gaussian blur (sigma 0.1-2) with p 0.5. As in
    torchvision's ColorJitter the four jitters come in a random order; here the
    order is drawn once per batch (each clip still draws its own factors).
    Grey ``channel`` keeps one random RGB channel per frame, as the reference's
    RandomGray does; ``luma`` is ITU-R 601 grey, one for the whole clip.
    ``on_flow``: the draw also changes the flow images (:func:`colour_flow`).
    """

    def __init__(self, jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=0.8, p_gray=0.2, p_blur=0.5, sigma=(0.1, 2.0),
                 grey="channel", on_flow=True):
        self.jitter, self.p_jitter, self.p_gray, self.p_blur, self.sigma = jitter, p_jitter, p_gray, p_blur, sigma
        self.grey, self.on_flow = grey, on_flow

    @classmethod
    def from_settings(cls, clip: dict):
        return cls(grey=clip["grey"], on_flow=clip["flow_colour"])

    def draw(self, n, frames, device, coloured=None) -> ColourDraw:
        """Draws for ``n`` clips of ``frames`` frames; clips where ``coloured`` (B,) is False
        draw like the others and get the identity (the base/null split of the reference)."""
        def draw(p):
            hit = torch.rand(n, device=device) < p
            return hit if coloured is None else hit & coloured.to(device)

        def factor(mask, low, high, identity):
            value = torch.empty(n, device=device).uniform_(low, high)
            return torch.where(mask, value, identity).view(n, 1, 1, 1, 1)

        jittered = draw(self.p_jitter)
        order = torch.randperm(4).tolist()
        b, c, s, h = self.jitter
        ranges = [(1 - b, 1 + b, 1.0), (1 - c, 1 + c, 1.0), (1 - s, 1 + s, 1.0), (-h, h, 0.0)]
        factors = [None] * 4
        for step in order:
            factors[step] = factor(jittered, *ranges[step])
        grey = draw(self.p_gray)
        channel = torch.randint(3, (n, frames), device=device) if self.grey == "channel" else None
        blurred = draw(self.p_blur)
        sigma = torch.where(blurred, torch.empty(n, device=device).uniform_(*self.sigma), 1e-3)
        return ColourDraw(order, tuple(factors), jittered, grey, channel, blurred, sigma)

    def apply(self, video, drawn: ColourDraw):
        """Each operation computed on the clips that drew it only: the others' identity is exact
        (factor 1, no grey, the identity kernel), so skipping them changes no value."""
        video = video.clone()
        brightness, contrast, saturation, hue = drawn.factors
        jittered = drawn.jittered.nonzero().flatten()
        steps = [(adjust_brightness, brightness), (adjust_contrast, contrast), (adjust_saturation, saturation),
                 (adjust_hue, hue)]
        if len(jittered):
            clips = video[jittered]
            for step in drawn.order:
                adjust, factor = steps[step]
                clips = adjust(clips, factor[jittered])
            video[jittered] = clips
        grey = drawn.grey.nonzero().flatten()
        if len(grey):
            clips = video[grey]
            if drawn.grey_channel is None:
                video[grey] = luma(clips).expand_as(clips)
            else:
                index = drawn.grey_channel[grey].view(len(grey), -1, 1, 1, 1).expand(-1, -1, 1, *clips.shape[-2:])
                video[grey] = clips.gather(2, index).expand_as(clips)
        blurred = drawn.blurred.nonzero().flatten()
        if len(blurred):
            kernel = max(3, (min(video.shape[-2:]) // 10) | 1)  # a tenth of the clip's side, odd
            video[blurred] = gaussian_blur(video[blurred], drawn.sigma[blurred], kernel)
        return video

    def __call__(self, video, coloured=None):
        return self.apply(video, self.draw(len(video), video.shape[1], video.device, coloured))


def colour_flow(flow, colour: RandomColour, drawn: ColourDraw):
    """Flow network input (B, C, T, H, W) coloured as the reference colours its flow images.

    The reference stores flow as an 8-bit image (128, y, x) (:mod:`coclr.flow.quantise`) and
    puts it through the RGB clip's colour transform. Here the image is rebuilt from the input,
    coloured with the same draw, and read back: 3 channels as that image normalised like RGB;
    2 channels as its y and x channels, back in the (x, y) / 20 layout, so a 2-channel network
    sees the motion channels of the very image the reference's network saw.
    """
    mean = flow.new_tensor(RGB_MEAN).view(3, 1, 1, 1)
    std = flow.new_tensor(RGB_STD).view(3, 1, 1, 1)
    if flow.shape[1] == 3:
        image = flow * std + mean
    else:
        x, y = ((flow + 1) / 2).unbind(1)
        image = torch.stack([torch.full_like(x, 128 / 255), y, x], dim=1)
    image = colour.apply(image.transpose(1, 2), drawn).transpose(1, 2)
    if flow.shape[1] == 3:
        return ((image - mean) / std).contiguous()
    return torch.stack([image[:, 2], image[:, 1]], dim=1) * 2 - 1
