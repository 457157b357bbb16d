"""Clip sampling and augmentation: one draw per clip, RGB and flow aligned, flips negate flow x."""

import random

import numpy as np
import pandas as pd
import pytest
import torch

from coclr.augment import RGB_MEAN, RGB_STD, ClipAugment, crop_flow, crop_rgb, flow_input
from coclr.clips import ClipReader, DenseClipDataset, TwoClipDataset, latest_start, usable_videos, window_indices
from coclr.config import complete_settings
from coclr.flow.quantise import dequantise
from coclr.shards import frame_store

H, W, T = 40, 48, 6


def ramp_clip():
    """RGB whose grey level and flow whose y component both grow with x."""
    x = torch.linspace(0, 1, W).view(1, 1, W, 1)
    rgb = (x * 255).expand(T, H, W, 3).round().to(torch.uint8)
    flow = torch.zeros(T, H, W, 2)
    flow[..., 1] = x[..., 0] * 10
    flow[..., 0] = 3.0  # uniform motion to the right
    return rgb, flow


def profile_slope(image):
    """Sign of the left-to-right trend of a (H, W) image."""
    profile = image.mean(0)
    return float(np.sign(profile[-1] - profile[0]))


@pytest.mark.parametrize("seed", range(8))
def test_rgb_and_flow_share_crop_and_flip(seed):
    torch.manual_seed(seed)
    random.seed(seed)
    rgb, flow = ramp_clip()
    out = ClipAugment(32, crop_area=(0.3, 1.0))(rgb=rgb, flow=flow)
    rgb_trend = profile_slope(out["rgb"][:, 0].float().mean(0).numpy())
    flow_trend = profile_slope(out["flow"][1, 0].numpy())
    assert rgb_trend == flow_trend  # the same flip went to both views
    flipped = rgb_trend < 0
    assert (out["flow"][0] < 0).all() == flipped  # and x motion points the other way after a flip


def test_augmentation_is_consistent_within_a_clip():
    rgb, flow = ramp_clip()
    torch.manual_seed(0)
    out = ClipAugment(32)(rgb=rgb, flow=flow)
    assert torch.equal(out["rgb"], out["rgb"][:1].expand_as(out["rgb"]))  # identical frames stay identical
    assert torch.allclose(out["flow"], out["flow"][:, :1].expand_as(out["flow"]))


def test_flip_negates_flow_x_unless_the_reference_behaviour_is_asked_for():
    _, flow = ramp_clip()
    box = (0, 0, H, W)
    assert (crop_flow(flow, box, 32, flip=True)[:, 0] < 0).all()
    assert (crop_flow(flow, box, 32, flip=True, negate_x=False)[:, 0] > 0).all()


def test_resizing_a_crop_scales_the_flow_vectors():
    _, flow = ramp_clip()
    resized = crop_flow(flow, (0, 0, 16, 16), 32, flip=False)  # 2x zoom
    assert torch.allclose(resized[:, 0], torch.full_like(resized[:, 0], 6.0))


def test_crop_rgb_output_layout():
    rgb, _ = ramp_clip()
    out = crop_rgb(rgb, (4, 4, 30, 30), 16, flip=False)
    assert out.shape == (T, 3, 16, 16) and out.dtype == torch.uint8  # colour and normalisation come per batch


def test_flow_input_layouts():
    _, flow = ramp_clip()
    field = flow.permute(0, 3, 1, 2)
    two = flow_input(field, channels=2)
    assert two.shape == (2, T, H, W) and two.abs().max() <= 1
    three = flow_input(field, channels=3)  # the released checkpoints' (128, y, x) image
    assert three.shape == (3, T, H, W)
    assert torch.allclose(three[0], three[0].flatten()[0].expand_as(three[0]))  # constant channel


def test_three_channel_flow_input_is_the_storage_codes_not_rounded_again():
    """(128, y, x) codes as RGB: a stored field gives its own codes; a resized one keeps its interpolated values."""
    codes = torch.tensor([[0.0, 1.0], [127.0, 254.0]])
    stored = torch.from_numpy(dequantise(codes.numpy())).expand(1, 2, 2, 2)  # flow as a shard gives it back
    halfway = stored + 0.5 * 40 / 255  # between two codes, as a resize makes it
    mean, std = torch.tensor(RGB_MEAN).view(3, 1, 1, 1), torch.tensor(RGB_STD).view(3, 1, 1, 1)
    for field, expected in ((stored, codes), (halfway, codes + 0.5)):
        image = (flow_input(field, channels=3) * std + mean) * 255
        assert torch.allclose(image[2, 0], expected, atol=1e-3) and torch.allclose(image[1, 0], expected, atol=1e-3)
        assert torch.allclose(image[0], torch.full_like(image[0], 128.0), atol=1e-3)


class RecordingReader:
    """A reader over videos of given lengths whose frames show their index: what was read is visible."""

    def __init__(self, lengths):
        self.lengths = lengths

    def length(self, video_id):
        return self.lengths[video_id]

    def read(self, video_id, indices):
        return {"rgb": torch.as_tensor(indices, dtype=torch.uint8)[:, None, None, None].expand(-1, 40, 40, 3).contiguous()}


def test_short_videos_are_padded_on_the_left_with_their_first_frame():
    """The reference pads a video shorter than the clip by repeating its first frame, never its last."""
    assert list(window_indices(latest_start(32, 1, 29), 32, 1, 29)) == [0] * 3 + list(range(29))
    assert list(window_indices(latest_start(4, 2, 5), 4, 2, 5)) == [0, 0, 2, 4]
    assert list(window_indices(0, 4, 2, 9)) == [0, 2, 4, 6]  # long enough: no padding


def test_a_short_video_gives_one_padded_window_in_training_and_evaluation():
    videos = pd.DataFrame({"video_id": ["short", "long"], "label": [0, 1], "group": ["a", "b"]})
    reader = RecordingReader({"short": 29, "long": 47})
    clip = complete_settings({"clip": {"frames": 32, "size": 32, "crop_area": [1.0, 1.0], "eval_stride": 15}})["clip"]
    train = TwoClipDataset(videos, reader, clip, flow_channels=2)
    for _ in range(3):
        shown = train[0]["query"]["rgb"][:, 0, 16, 16]  # (T, C, H, W) uint8: the frame index
        assert shown.tolist() == [0] * 3 + list(range(29))
    dense = DenseClipDataset(videos, reader, clip, flow_channels=2)
    assert [(w[0], w[1]) for w in dense.windows] == [(0, -3), (1, 0), (1, 15)]


def test_two_clip_dataset_reads_from_the_shards(tiny_dataset):
    manifest = pd.read_csv(tiny_dataset["manifest"])
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    reader = ClipReader(frames=frame_store(tiny_dataset["frames"]))
    dataset = TwoClipDataset(train, reader, complete_settings({"clip": {"frames": 8, "stride": 2, "size": 32}})["clip"],
                             flow_channels=2)
    item = dataset[3]
    assert item["query"]["rgb"].shape == item["key"]["rgb"].shape == (8, 3, 32, 32)  # uint8 (T, C, H, W)
    assert item["label"] == train.label[3]
    same_group = train.group == train.group[3]
    assert (dataset.groups[torch.from_numpy(same_group.to_numpy())] == item["group"]).all()
    dense = DenseClipDataset(train, reader, complete_settings({"clip": {"frames": 8, "size": 32, "eval_stride": 4}})["clip"],
                             flow_channels=2)
    assert len(dense) == len(train) * 3  # 16 frames: windows at 0, 4, 8


def test_videos_of_different_sizes_and_frame_rates_give_clips_with_frames_fps_set(tmp_path):
    """Real footage at 160x120 / 25 fps and 176x144 / 30 fps in one dataset, with a short one, resampled to
    frames.fps 25 at short side 64: every clip comes out at the configured size and length."""
    from conftest import coclr
    from realdata import cut

    videos, lists = tmp_path / "videos", tmp_path / "lists"
    lists.mkdir()
    specs = {"Biking/v_Biking_g01_c01.avi": ("bikes", (160, 120), 25, 36),
             "Biking/v_Biking_g02_c01.avi": ("bikes", (176, 144), 30, 30),  # 25 frames at 25 fps: shorter than 32
             "Phoning/v_Phoning_g01_c01.avi": ("carphone", (176, 144), 30, 48)}
    for rel, (source, size, fps, frames) in specs.items():
        cut(source, videos / rel, 0, frames, size, fps=fps)
    (lists / "classInd.txt").write_text("1 Biking\n2 Phoning\n")
    (lists / "trainlist01.txt").write_text("".join(f"{rel} {1 + rel.startswith('Phoning')}\n" for rel in specs))
    (lists / "testlist01.txt").write_text("")
    manifest = tmp_path / "manifest.csv"
    coclr("ingest", "--format", "ucf101", "--root", videos, "--splits-dir", lists, "--videos-per-shard", 10,
          "--out", manifest)
    table = pd.read_csv(manifest)
    assert sorted(table["fps"].round()) == [25, 30, 30] and table["height"].nunique() == 2
    shard = tmp_path / "frames.h5"
    coclr("frames", "--manifest", manifest, "--shard", 0, "--out", shard, "--fps", 25, "--short-side", 64)
    store = frame_store([shard])
    lengths = {rel: store.num_frames(table.set_index("path").loc[str(videos / rel), "video_id"]) for rel in specs}
    assert [abs(n - e) <= 1 for n, e in zip(lengths.values(), (36, 25, 40))] == [True] * 3  # resampled to 25 fps
    train = usable_videos(table, "train", [store])
    dataset = TwoClipDataset(train, ClipReader(frames=store), complete_settings({"clip": {"frames": 32, "size": 48}})["clip"],
                             flow_channels=2)
    for index in range(len(dataset)):
        assert dataset[index]["query"]["rgb"].shape == (32, 3, 48, 48)
