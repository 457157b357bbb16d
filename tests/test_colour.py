"""Colour augmentation per batch on the device: torchvision's operations, one draw per clip."""

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from coclr.augment import (RGB_MEAN, RGB_STD, RandomColour, adjust_brightness, adjust_contrast, adjust_hue,
                           adjust_saturation, gaussian_blur, hue_tensors, luma, rgb_input)
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


def test_the_compiled_hue_rotation_is_the_tensor_operations_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (12, 4, 3, 16, 16), generator=g, dtype=torch.uint8).float() / 255
    video[:2] = video[:2, :, :1]  # grey pixels: no hue
    video[2:4, :, 1] = video[2:4, :, 0]  # red and green tie for the largest or smallest channel
    video[4:6, :, 2] = video[4:6, :, 1]
    video[6, :, :, :8] = 0.0  # black
    video[7, :, :, :8] = 1.0  # white
    shift = torch.linspace(-0.5, 0.5, 12).view(-1, 1, 1, 1, 1)
    assert torch.equal(adjust_hue(video, shift), hue_tensors(video, shift))


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
    out = RandomColour(grey="luma")(video)
    assert out.shape == video.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, out[:, :1].expand_as(out))  # every frame of a clip got the same change
    differences = (out[1:] - out[:1]).abs().flatten(1).amax(1)
    assert (differences > 1e-3).sum() >= 5  # clips drew their own changes


def test_the_probabilities_are_honoured():
    torch.manual_seed(0)
    video = clip_batch(n=400, t=1, size=12)
    never = RandomColour(p_jitter=0.0, p_gray=0.0, p_blur=0.0)(video)
    assert torch.allclose(never, video, atol=1e-6)
    gray = RandomColour(p_jitter=0.0, p_gray=1.0, p_blur=0.0, grey="luma")(video)
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
    out = to_device(batch, torch.device("cpu"), RandomColour(on_flow=False))
    assert out["query"]["rgb"].shape == (2, 3, 4, 8, 8) and out["query"]["rgb"].dtype == torch.float32
    assert torch.equal(out["query"]["flow"], batch["query"]["flow"]) and torch.equal(out["label"], batch["label"])


def test_channel_grey_keeps_one_random_channel_per_frame():
    torch.manual_seed(0)
    video = clip_batch(n=4, t=12, size=8)
    grey = RandomColour(p_jitter=0.0, p_gray=1.0, p_blur=0.0, grey="channel")(video)
    kept = []
    for clip, out in zip(video, grey):
        for frame, result in zip(clip, out):
            assert torch.equal(result[0], result[1]) and torch.equal(result[1], result[2])
            kept.append(next(c for c in range(3) if torch.equal(result[0], frame[c])))
    assert set(kept) == {0, 1, 2}  # drawn again for every frame


def test_clips_not_flagged_for_colour_pass_unchanged():
    torch.manual_seed(0)
    video = clip_batch(n=6)
    coloured = torch.tensor([True, False, True, False, True, False])
    out = RandomColour(p_jitter=1.0, p_gray=0.0, p_blur=1.0)(video, coloured)
    assert torch.equal(out[~coloured], video[~coloured])
    assert ((out[coloured] - video[coloured]).abs().flatten(1).amax(1) > 1e-3).all()


def flow_image(flow):
    """The (128, y, x) image in [0, 1] that 2-channel flow input (x, y) / 20 stands for, (B, T, 3, H, W)."""
    x, y = ((flow + 1) / 2).unbind(1)
    return torch.stack([torch.full_like(x, 128 / 255), y, x], dim=2)


@pytest.mark.parametrize("channels", [2, 3])
def test_flow_is_coloured_with_its_rgb_clips_draw(channels):
    """Brightness only: the RGB clip's factor and the flow image's factor are the same draw."""
    torch.manual_seed(0)
    rgb = torch.full((4, 3, 3, 8, 8), 100, dtype=torch.uint8)
    flow2 = torch.rand(4, 2, 3, 8, 8) * 0.4 - 0.2
    image = flow_image(flow2)
    mean, std = torch.tensor(RGB_MEAN).view(3, 1, 1), torch.tensor(RGB_STD).view(3, 1, 1)
    flow = flow2 if channels == 2 else ((image - mean) / std).transpose(1, 2)
    colour = RandomColour(jitter=(0.4, 0.0, 0.0, 0.0), p_jitter=1.0, p_gray=0.0, p_blur=0.0)
    out = to_device({"rgb": rgb, "flow": flow, "coloured": torch.tensor([True, True, False, True])}, "cpu", colour)
    rgb_factor = ((out["rgb"] * std.view(3, 1, 1, 1) + mean.view(3, 1, 1, 1)) * 255 / 100)[:, 0, 0, 0, 0]
    if channels == 2:
        coloured_image = flow_image(out["flow"])
    else:
        coloured_image = (out["flow"].transpose(1, 2) * std + mean)
    flow_factor = (coloured_image / image).flatten(1).median(1).values
    assert torch.allclose(rgb_factor, flow_factor, atol=1e-4)
    assert rgb_factor[2] == pytest.approx(1.0) and (rgb_factor[[0, 1, 3]] - 1).abs().min() > 1e-3
    assert torch.allclose(out["flow"][2], flow[2], atol=1e-6)  # not flagged: unchanged


def test_flow_alone_is_coloured_unless_switched_off():
    torch.manual_seed(0)
    flow = torch.rand(4, 2, 3, 8, 8) * 0.4 - 0.2
    coloured = to_device({"flow": flow}, "cpu", RandomColour(p_jitter=1.0))["flow"]
    assert (coloured - flow).abs().amax() > 1e-2
    assert torch.equal(to_device({"flow": flow}, "cpu", RandomColour(p_jitter=1.0, on_flow=False))["flow"], flow)


def every_op_on_every_clip(colour, video, drawn):
    """The colour transform as it was before it skipped clips and compiled the hue rotation: every
    operation on the whole batch with each clip's identity where it did not draw the operation,
    then the drawn results selected."""
    n = len(video)
    brightness, contrast, saturation, hue = drawn.factors
    steps = [lambda v: adjust_brightness(v, brightness), lambda v: adjust_contrast(v, contrast),
             lambda v: adjust_saturation(v, saturation),
             lambda v: torch.where(drawn.jittered.view(n, 1, 1, 1, 1), hue_tensors(v, hue), v)]
    for step in drawn.order:
        video = steps[step](video)
    if drawn.grey_channel is None:
        grey = luma(video).expand_as(video)
    else:
        index = drawn.grey_channel.view(n, -1, 1, 1, 1).expand(-1, -1, 1, *video.shape[-2:])
        grey = video.gather(2, index).expand_as(video)
    video = torch.where(drawn.grey.view(n, 1, 1, 1, 1), grey, video)
    return gaussian_blur(video, drawn.sigma, max(3, (min(video.shape[-2:]) // 10) | 1))


@pytest.mark.parametrize("grey", ["channel", "luma"])
@pytest.mark.parametrize("seed", range(4))
def test_colouring_only_the_clips_that_drew_an_operation_changes_no_value(grey, seed):
    """Bit for bit, on RGB clips (uint8 / 255) and on the flow images of 2-channel flow."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (16, 4, 3, 24, 24), generator=g, dtype=torch.uint8).float() / 255
    flow = flow_image(torch.rand(16, 2, 4, 24, 24, generator=g) * 2 - 1)
    colour = RandomColour(grey=grey)
    for video in (rgb, flow):
        torch.manual_seed(seed)
        drawn = colour.draw(len(video), video.shape[1], "cpu", torch.rand(len(video)) < 0.7)
        assert all(0 < mask.sum() < len(video) for mask in (drawn.jittered, drawn.grey, drawn.blurred))
        assert torch.equal(colour.apply(video, drawn), every_op_on_every_clip(colour, video, drawn))
