"""Store integrity and full disks: corrupt shards and ENOSPC name the file and the fix; nothing half-written stays."""

import errno
import subprocess
import sys

import cv2
import h5py
import pandas as pd
import pytest
import torch

import coclr.frames
from coclr.clips import ClipReader, TwoClipDataset
from coclr.config import complete_settings
from coclr.shards import VIDEOS, frame_store, read_encoded
from coclr.frames import extract_shard
from coclr.io import DiskFull, ShardError
from coclr.training.sampler import resumable_loader
from realdata import cut

FORCERUN = "rebuild it with `snakemake --cores all --forcerun={}`"


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A frame shard of three clips of real footage."""
    root = tmp_path_factory.mktemp("footage")
    videos = [cut(src, root / f"{src}{i}.avi", start=10 * i, frames=20) for i, src in
              enumerate(["bikes", "carphone", "bikes"])]
    rows = pd.DataFrame({"video_id": [f"C/v{i}" for i in range(3)], "path": list(map(str, videos)), "fps": 25.0,
                         "label": [0, 1, 0], "group": ["g0", "g1", "g2"], "split": "train"})
    path = root / "shard_00000.h5"
    extract_shard(rows, path)
    return {"path": path, "rows": rows}


def corrupted_copy(shard, tmp_path, where):
    data = bytearray(shard["path"].read_bytes())
    for i in range(where, where + 4):
        data[i] ^= 0x5A
    path = tmp_path / "shard_00000.h5"
    path.write_bytes(data)
    return path


def read_all(path):
    store = frame_store([path])
    for video in store.index:
        store.read(video)


def test_bytes_flipped_mid_file_name_the_shard_and_the_rebuild(shard, tmp_path):
    path = corrupted_copy(shard, tmp_path, shard["path"].stat().st_size // 2)
    with pytest.raises(ShardError, match=rf"shard {path} is corrupt .* at video .*{FORCERUN.format(path)}"):
        read_all(path)


def test_a_flipped_jpeg_that_still_decodes_is_caught_by_the_checksum(shard, tmp_path):
    with h5py.File(shard["path"], "r") as f:
        dataset = f[VIDEOS]["C/v1"]
        offsets = dataset.attrs["offsets"]
        assert dataset.fletcher32
        jpeg = read_encoded(dataset, 3, 4)[0].copy()
        where = dataset.id.get_chunk_info(0).byte_offset + int(offsets[3]) + len(jpeg) // 2  # frame 3's scan data
    jpeg[len(jpeg) // 2:len(jpeg) // 2 + 4] ^= 0x5A
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR) is not None  # the flipped frame alone decodes without complaint
    path = corrupted_copy(shard, tmp_path, where)
    store = frame_store([path])
    store.read("C/v0")  # the other videos still read
    with pytest.raises(ShardError, match=rf"shard {path} is corrupt or unreadable at video C/v1 .*filter returned failure"):
        store.read("C/v1", 2, 6)


def test_a_corrupt_shard_fails_a_dataloader_worker_with_the_message(shard, tmp_path):
    path = corrupted_copy(shard, tmp_path, shard["path"].stat().st_size // 2)
    reader = ClipReader(frames=frame_store([path]))
    clip = complete_settings({"clip": {"frames": 20, "size": 32}})["clip"]  # whole videos: the corrupt chunk is read
    loader = resumable_loader(TwoClipDataset(shard["rows"], reader, clip, flow_channels=2), 3, seed=0, workers=1)
    with pytest.raises(ShardError, match=FORCERUN.format(path)):
        next(iter(loader))


def test_a_flow_job_on_a_corrupt_frame_shard_fails_with_the_fix_and_no_output(shard, tmp_path):
    path = corrupted_copy(shard, tmp_path, shard["path"].stat().st_size // 2)
    out = tmp_path / "flow.h5"
    result = subprocess.run([sys.executable, "-m", "coclr", "flow", "--frames", path, "--out", out],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert FORCERUN.format(path) in result.stderr
    assert not list(tmp_path.glob("*flow*"))


def test_a_full_disk_while_writing_a_shard_names_it_and_keeps_the_old_one(shard, tmp_path, monkeypatch):
    out = tmp_path / "shard_00000.h5"
    out.write_bytes(shard["path"].read_bytes())
    before = out.read_bytes()
    real = coclr.frames.write_video

    def fill_disk(f, video_id, encoded, **attrs):
        real(f, video_id, encoded, **attrs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(coclr.frames, "write_video", fill_disk)
    with pytest.raises(DiskFull, match=rf"writing {out}: .* free in {tmp_path}, it needs at least"):
        extract_shard(shard["rows"], out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_full_disk_while_writing_features_names_the_file(tmp_path, monkeypatch):
    from coclr.io import atomic_path

    out = tmp_path / "features.pt"

    def save_until_full(obj, path):
        path.write_bytes(b"\0" * 3000)
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 3000 vs 2900: "
                           "No space left on device")  # how torch.save reports it

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(DiskFull, match=rf"writing {out}: .* it needs at least 2\.9 KiB"):
        with atomic_path(out) as tmp:  # as coclr.evaluation.features writes its output
            torch.save({}, tmp)
    assert list(tmp_path.iterdir()) == []
