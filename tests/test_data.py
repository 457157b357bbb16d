"""The data stage: synthetic round trip, shard reader, corrupt videos, atomic outputs."""

import random

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from coclr.augment import RandomColour
from coclr.batch import collate, to_device
from coclr.clips import ClipReader, TwoClipDataset
from coclr.config import complete_settings
from coclr.shards import (VIDEOS, DecodedInMemory, create_shard, decode_jpegs, decoded_mib, encode_jpegs, flow_store,
                          frame_store, in_memory, shard_failures, write_video)
from coclr.frames import extract_shard
from coclr.io import atomic_path
from coclr.video import decode
from tests.realdata import cut


def test_frames_read_back_equal_the_decoded_video(tiny_dataset):
    manifest = pd.read_csv(tiny_dataset["manifest"])
    store = frame_store(tiny_dataset["frames"])
    assert len(store.index) == len(manifest)
    for row in manifest.sample(5, random_state=0).itertuples():
        decoded = decode(row.path)
        stored = store.read(row.video_id).numpy()
        assert stored.shape == decoded.shape == (row.num_frames, row.height, row.width, 3)
        # Exactly the decoded video after one JPEG round trip at the stored quality.
        assert (stored == decode_jpegs(encode_jpegs(decoded, 90))).all()
        assert np.abs(stored.astype(int) - decoded).mean() < 6


def test_reader_returns_any_frame_range(tiny_dataset):
    store = frame_store(tiny_dataset["frames"])
    video = next(iter(store.index))
    whole = store.read(video)
    assert store.read(video, 3, 9).shape[0] == 6
    assert (store.read(video, 3, 9) == whole[3:9]).all()
    assert (store.read_indices(video, [8, 2, 5]) == whole[[8, 2, 5]]).all()
    with pytest.raises(IndexError, match=video):
        store.read(video, 0, 99)


def test_reader_opens_each_shard_once_per_process(tiny_dataset):
    store = frame_store(tiny_dataset["frames"])
    for video in list(store.index)[:30]:
        store.read(video, 0, 2)
    assert len(store._handles) == len({store.index[v] for v in list(store.index)[:30]})


def test_a_clip_is_one_read_of_the_video_blob(tmp_path):
    frames = [np.full(n, n, dtype=np.uint8) for n in (3, 1, 4, 2)]  # stand-ins for encoded frames
    with create_shard(tmp_path / "s.h5") as f:
        write_video(f, "A/v_A_g01_c01", frames, fps=25.0)
        write_video(f, "A/v_A_g02_c01", [])
    store = frame_store([tmp_path / "s.h5"])
    assert store.num_frames("A/v_A_g01_c01") == 4 and store.num_frames("A/v_A_g02_c01") == 0
    got = store.encoded("A/v_A_g01_c01", 1, 3)
    assert [g.tolist() for g in got] == [[1], [4, 4, 4, 4]]
    assert got[0].base is got[1].base  # views of one read
    with pytest.raises(IndexError, match="A/v_A_g01_c01"):
        store.encoded("A/v_A_g01_c01", 2, 5)


def test_offsets_of_long_videos_fit(tmp_path):
    frames = [np.zeros(1, dtype=np.uint8)] * 20000  # offsets of 160 kB: over HDF5's compact attribute limit
    with create_shard(tmp_path / "s.h5") as f:
        write_video(f, "v", frames)
    assert frame_store([tmp_path / "s.h5"]).num_frames("v") == 20000


def test_shards_of_the_old_per_frame_layout_are_refused_with_the_fix(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.create_dataset(f"{VIDEOS}/A/v", shape=(2,), dtype=h5py.vlen_dtype(np.uint8))
    with pytest.raises(ValueError, match="old.h5.*rerun"):
        frame_store([tmp_path / "old.h5"])


def test_corrupt_video_is_recorded_not_fatal(tiny_dataset, tmp_path):
    manifest = pd.read_csv(tiny_dataset["manifest"]).head(4).copy()
    broken = tmp_path / "broken.avi"
    data = open(manifest.path.iloc[1], "rb").read()
    broken.write_bytes(data[: len(data) // 3])
    manifest.loc[1, "path"] = str(broken)
    summary = extract_shard(manifest, tmp_path / "shard.h5")
    assert summary["videos"] == 3 and summary["failed"] == 1
    with h5py.File(tmp_path / "shard.h5") as f:
        failures = shard_failures(f)
    assert [f["video"] for f in failures] == [manifest.video_id.iloc[1]]
    assert manifest.video_id.iloc[1] not in frame_store([tmp_path / "shard.h5"])


def test_strict_mode_makes_a_corrupt_video_fatal(tiny_dataset, tmp_path):
    manifest = pd.read_csv(tiny_dataset["manifest"]).head(2).copy()
    (tmp_path / "broken.avi").write_bytes(b"not a video")
    manifest.loc[0, "path"] = str(tmp_path / "broken.avi")
    with pytest.raises(Exception, match="broken.avi"):
        extract_shard(manifest, tmp_path / "shard.h5", strict=True)
    assert not (tmp_path / "shard.h5").exists()  # nothing that looks complete


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_decoding_on_the_device_gives_the_loaders_pixels(tmp_path):
    """resources.jpeg_decode: device, run on the CPU: the same crops, bit for bit, from real footage."""

    path = tmp_path / "frames.h5"
    with create_shard(path) as shard:
        for i, source in enumerate(["bikes", "carphone"]):
            video = cut(source, tmp_path / f"{source}.avi", start=5, frames=12, size=(96, 72))
            frames = decode(video)
            write_video(shard, f"C/v_C_g0{i}_c01", encode_jpegs(frames, 90), fps=25.0,
                        height=frames.shape[1], width=frames.shape[2])
    videos = pd.DataFrame({"video_id": ["C/v_C_g00_c01", "C/v_C_g01_c01"], "label": [0, 1], "group": ["a", "b"]})
    clip = complete_settings({"clip": {"frames": 8, "size": 32, "crop_area": [0.3, 1.0]}})["clip"]
    batches = {}
    for encoded in (False, True):
        data = TwoClipDataset(videos, ClipReader(frames=frame_store([path], encoded=encoded)), clip, flow_channels=2)
        random.seed(3)
        torch.manual_seed(3)
        batch = next(iter(DataLoader(data, batch_size=2, collate_fn=collate)))
        torch.manual_seed(4)
        batches[encoded] = to_device(batch, "cpu", RandomColour())
    assert isinstance(batch["query"]["rgb"], list)  # the loader handed on bytes
    for side in ("query", "key"):
        assert batches[True][side]["rgb"].shape == (2, 3, 8, 32, 32)
        assert torch.equal(batches[True][side]["rgb"], batches[False][side]["rgb"])


@pytest.mark.parametrize("kind", ["frames", "flow"])
def test_videos_decoded_in_memory_read_as_the_shards_do(tiny_dataset, kind, capsys):
    store = (frame_store if kind == "frames" else flow_store)(tiny_dataset[kind])
    video_ids = sorted(store.index)[:6]
    held = in_memory(store, video_ids, budget_mib=64, kind=kind)
    assert isinstance(held, DecodedInMemory)
    for video_id in video_ids:
        assert held.num_frames(video_id) == store.num_frames(video_id)
        indices = [0, 0, 3, 1, store.num_frames(video_id) - 1]
        assert torch.equal(held.read_indices(video_id, indices), store.read_indices(video_id, indices))
    needed = decoded_mib(store, video_ids, *((3, 1) if kind == "frames" else (2, 4)))
    assert sum(v.numel() * v.element_size() for v in held.videos.values()) / 2 ** 20 == pytest.approx(needed)
    assert in_memory(store, video_ids, budget_mib=needed / 2, kind=kind) is store  # over budget: the shards
    assert "exceed resources.memory_cache_mib" in capsys.readouterr().err
    assert in_memory(store, video_ids, budget_mib=0, kind=kind) is store
