"""Colour augmentation per batch on the device: torchvision's operations, one draw per clip."""

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from coclr.augment import (RGB_MEAN, RGB_STD, RandomColour, adjust_brightness, adjust_contrast, adjust_hue,
                           adjust_saturation, gaussian_blur, luma, rgb_input)
from coclr.batch import to_device


def clip_batch(n=3, t=4, size=20, seed=0):
    return torch.rand(n, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def per_clip(values):
    return torch.tensor(values).view(-1, 1, 1, 1, 1)


@pytest.mark.parametrize("ours, theirs, factors", [
    (adjust_brightness, F.adjust_brightness, [0.6, 1.0, 1.4]),
    (adjust_contrast, F.adjust_contrast, [0.6, 1.0, 1.4]),
    (adjust_saturation, F.adjust_saturation, [0.6, 1.0, 1.4]),
    (adjust_hue, F.adjust_hue, [-0.1, 0.0, 0.07]),
])
def test_each_jitter_matches_torchvision_clip_by_clip(ours, theirs, factors):
    video = clip_batch()
    out = ours(video.clone(), per_clip(factors))
    for clip, factor, result in zip(video, factors, out):
        assert torch.allclose(result, theirs(clip, factor), atol=1e-5)


def test_luma_is_torchvisions_grayscale():
    video = clip_batch()
    assert torch.allclose(luma(video)[0], F.rgb_to_grayscale(video[0]), atol=1e-6)


def test_blur_matches_torchvision_with_one_sigma_per_clip():
    video = clip_batch()
    sigmas = [0.5, 1.0, 2.0]
    out = gaussian_blur(video, torch.tensor(sigmas), 5)
    for clip, sigma, result in zip(video, sigmas, out):
        assert torch.allclose(result, F.gaussian_blur(clip, [5, 5], [sigma, sigma]), atol=1e-5)


def test_a_tiny_sigma_leaves_a_clip_unchanged():
    video = clip_batch()
    assert torch.equal(gaussian_blur(video, torch.full((3,), 1e-3), 3), video)


def test_one_draw_per_clip():
    torch.manual_seed(0)
    frame = torch.rand(1, 1, 3, 16, 16)
    video = frame.expand(8, 4, 3, 16, 16).contiguous()  # 8 identical clips of identical frames
    out = RandomColour()(video)
    assert out.shape == video.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, out[:, :1].expand_as(out))  # every frame of a clip got the same change
    differences = (out[1:] - out[:1]).abs().flatten(1).amax(1)
    assert (differences > 1e-3).sum() >= 5  # clips drew their own changes


def test_the_probabilities_are_honoured():
    torch.manual_seed(0)
    video = clip_batch(n=400, t=1, size=12)
    never = RandomColour(p_jitter=0.0, p_gray=0.0, p_blur=0.0)(video)
    assert torch.allclose(never, video, atol=1e-6)
    gray = RandomColour(p_jitter=0.0, p_gray=1.0, p_blur=0.0)(video)
    assert torch.allclose(gray, luma(video).expand_as(video), atol=1e-6)
    some = RandomColour(p_jitter=0.0, p_gray=0.2, p_blur=0.0)(video)
    share = (some[:, :, 0] == some[:, :, 1]).flatten(1).all(1).float().mean().item()
    assert 0.12 < share < 0.28


def test_rgb_input_normalises_and_puts_channels_first():
    clips = torch.full((2, 5, 3, 8, 8), 255, dtype=torch.uint8)
    out = rgb_input(clips)
    assert out.shape == (2, 3, 5, 8, 8)
    expected = [(1 - m) / s for m, s in zip(RGB_MEAN, RGB_STD)]
    assert torch.allclose(out[0, :, 0, 0, 0], torch.tensor(expected))


def test_to_device_turns_only_rgb_into_network_input():
    batch = {"query": {"rgb": torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8), "flow": torch.ones(2, 2, 4, 8, 8)},
             "label": torch.tensor([1, 2])}
    out = to_device(batch, torch.device("cpu"), RandomColour())
    assert out["query"]["rgb"].shape == (2, 3, 4, 8, 8) and out["query"]["rgb"].dtype == torch.float32
    assert torch.equal(out["query"]["flow"], batch["query"]["flow"]) and torch.equal(out["label"], batch["label"])
