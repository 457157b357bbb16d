"""A researcher's own videos: the folder format, and each kind of bad input, on real footage."""

import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest

from coclr.cli import main
from coclr.data import list_videos
from coclr.ingest import UNLABELLED, held_out
from coclr.video import decode, ffmpeg_exe, probe
from realdata import cut

FRAMES = 20  # frames of each cut clip: shorter than the paper preset's 32-frame clip


def ingest(root, out, *extra):
    main(["ingest", "--format", "folder", "--root", str(root), "--test-fraction", "0.3", "--videos-per-shard", "50",
          "--out", str(out), *map(str, extra)])


def read(out):
    return pd.read_csv(out, keep_default_na=False)


def bad_files(folder):
    """A zero-length file, an audio-only file and random bytes, all named like videos."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "1",
                    "-c:a", "aac", str(folder / "audio only.mp4")], check=True)
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Class folders of real footage in five containers, one phone-rotated, with spaces and non-ASCII names."""
    root = tmp_path_factory.mktemp("own") / "my vidéos"
    cut("bikes", root / "Biking" / "ride one.mp4", 0, FRAMES, codec="h264")
    cut("bikes", root / "Biking" / "ride_two.mkv", 60, FRAMES, codec="h264")
    cut("bikes", root / "Biking" / "portrait.mp4", 120, FRAMES, codec="h264", rotation=90)
    cut("carphone", root / "Phoning" / "café.webm", 0, FRAMES, codec="vp8")
    cut("carphone", root / "Phoning" / "call.mov", 40, FRAMES, codec="mpeg4")
    cut("carphone", root / "Phoning" / "old.avi", 80, 40)
    return root


def test_folder_layout_any_container(own, tmp_path, capsys):
    out = tmp_path / "manifest.csv"
    ingest(own, out, "--clip-frames", 32)
    manifest = read(out).set_index("video_id")
    assert sorted(manifest.index) == ["Biking/portrait", "Biking/ride one", "Biking/ride_two",
                                      "Phoning/café", "Phoning/call", "Phoning/old"]
    assert manifest.loc["Biking/ride one", "label"] == 0 and manifest.loc["Phoning/café", "label"] == 1
    assert manifest.loc["Phoning/café", "class_name"] == "Phoning"
    assert (manifest["group"] == manifest.index).all()  # no group given: each video its own
    for video_id, row in manifest.iterrows():
        assert row["split"] == ("test" if held_out(video_id, 0.3) else "train")
    assert (manifest.loc["Biking/portrait", ["width", "height"]] == [120, 160]).all()  # displayed, not stored
    err = capsys.readouterr().err
    assert "6 videos (" in err and "2 classes" in err
    assert "5 of 6 videos are shorter than one clip (32 frames)" in err  # the 40-frame AVI is not


def test_folder_frames_rotated_and_non_ascii(own, tmp_path):
    out = tmp_path / "manifest.csv"
    ingest(own, out)
    main(["frames", "--manifest", str(out), "--shard", "0", "--out", str(tmp_path / "shard.h5")])
    with h5py.File(tmp_path / "shard.h5", "r") as f:
        assert "Phoning/café" in list_videos(f) and "Biking/ride one" in list_videos(f)
        portrait = f["videos/Biking/portrait"]
        assert (portrait.attrs["height"], portrait.attrs["width"]) == (160, 120)
        assert len(portrait.attrs["offsets"]) - 1 == FRAMES


def test_rotation_is_applied_and_sizes_agree(tmp_path):
    plain = cut("bikes", tmp_path / "plain.mp4", 0, 8, codec="h264")
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy",
                    str(rotated)], check=True)
    assert (probe(rotated)["width"], probe(rotated)["height"]) == (120, 160)
    # display_rotation 90 is a quarter turn counter-clockwise; the same stream, so bit-identical pixels
    np.testing.assert_array_equal(decode(rotated), np.rot90(decode(plain), 1, axes=(1, 2)))
    assert decode(rotated, short_side=32).shape == (8, 42, 32, 3)


def test_variable_frame_rate_keeps_every_frame_once(tmp_path):
    video = cut("bikes", tmp_path / "vfr.mp4", 0, FRAMES, codec="h264", vfr=True)
    meta = probe(video)
    assert len(decode(video)) == FRAMES and meta["fps"] < 25  # the average rate of a slower second half
    assert len(decode(video, fps=25)) > FRAMES  # resampled to a constant rate: frames repeat


def test_csv_list_unlabelled_with_groups(own, tmp_path, capsys):
    listing = tmp_path / "videos.csv"
    listing.write_text("path,group\n" + "".join(
        f"{path},{group}\n" for path, group in [(own / "Biking/ride one.mp4", "session1"),
                                                (own / "Biking/ride_two.mkv", "session1"),
                                                (own / "Phoning/café.webm", "")]), encoding="utf-8")
    out = tmp_path / "m.csv"
    ingest(listing, out)
    manifest = read(out)
    assert (manifest["label"] == UNLABELLED).all() and (manifest["class_name"] == "").all()
    grouped = manifest[manifest["group"] == "session1"]
    assert len(grouped) == 2 and grouped["split"].nunique() == 1  # one group, one side of the split
    assert manifest.loc[manifest["group"] != "session1", "group"].tolist() == [str(own / "Phoning/café").lstrip("/")]
    err = capsys.readouterr().err
    assert "3 videos (" in err and "unlabelled" in err


def test_csv_paths_relative_to_the_csv(tmp_path):
    videos = tmp_path / "data" / "clips"
    cut("bikes", videos / "a.mp4", 0, 8, codec="h264")
    cut("carphone", videos / "b.mp4", 0, 8, codec="h264")
    listing = tmp_path / "data" / "list.csv"
    listing.write_text("path,label,split\nclips/a.mp4,bike,train\nclips/b.mp4,phone,test\n")
    ingest(listing, tmp_path / "m.csv")
    manifest = read(tmp_path / "m.csv")
    assert manifest["video_id"].tolist() == ["clips/b", "clips/a"]
    assert manifest["path"].tolist() == [str(videos / "b.mp4"), str(videos / "a.mp4")]
    assert manifest["label"].tolist() == [1, 0] and manifest["split"].tolist() == ["test", "train"]
