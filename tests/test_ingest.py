"""Manifests built from fixtures in each dataset's official split-file format."""

import subprocess

import numpy as np
import pandas as pd
import pytest

from coclr.cli import main
from coclr.ingest import COLUMNS, ucf101
from coclr.ingest.manifest import build_manifest
from coclr.video import ffmpeg_exe, write_avi

FRAMES = np.full((8, 32, 32, 3), 100, np.uint8)


def tiny_video(path):
    """A real 8-frame 32x32 video, so the probe runs for real; .mp4 paths get an MP4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".avi":
        write_avi(path, FRAMES, fps=25)
    else:
        avi = path.with_name("source.avi")
        write_avi(avi, FRAMES, fps=25)
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", avi, "-c:v", "mpeg4", path], check=True)
        avi.unlink()


def ingest(*args):
    main(["ingest", *map(str, args)])


def read(out):
    return pd.read_csv(out, keep_default_na=False)


@pytest.fixture
def ucf(tmp_path):
    """UCF101 layout: videos in UCF-101/, split files (CRLF, trailing blanks) in ucfTrainTestlist/."""
    root, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 Archery \r\n\r\n")
    (splits / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        b"Archery/v_Archery_g08_c02.avi 2 \r\n"
        b"Archery/v_Archery_g09_c01.avi 2\r\n")
    (splits / "testlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
                                            b"Archery/v_Archery_g01_c01.avi\r\n")
    for video in ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "Archery/v_Archery_g08_c02",
                  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", "Archery/v_Archery_g01_c01"]:
        tiny_video(root / f"{video}.avi")  # v_Archery_g09_c01 stays missing
    return root, splits


def test_ucf101_manifest_and_missing_report(ucf, tmp_path, capsys):
    root, splits = ucf
    out = tmp_path / "manifest.csv"
    ingest("--format", "ucf101", "--root", root, "--splits-dir", splits, "--videos-per-shard", 3, "--out", out)
    manifest = read(out)
    assert list(manifest.columns) == COLUMNS
    assert manifest["video_id"].tolist() == [  # test before train, then by video_id
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", "Archery/v_Archery_g01_c01",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "Archery/v_Archery_g08_c02"]
    assert manifest["split"].tolist() == ["test", "test", "train", "train"]
    assert manifest["label"].tolist() == [0, 1, 0, 1]
    assert manifest["group"].tolist() == ["ApplyEyeMakeup_g01", "Archery_g01", "ApplyEyeMakeup_g08", "Archery_g08"]
    assert manifest["shard"].tolist() == [0, 0, 0, 1]
    first = manifest.iloc[0]
    assert first["path"] == str(root / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi")
    assert (first["num_frames"], first["fps"], first["width"], first["height"]) == (8, 25.0, 32, 32)
    missing = root / "Archery/v_Archery_g09_c01.avi"
    assert (tmp_path / "manifest.csv.missing.txt").read_text() == f"{missing}\n"
    assert (tmp_path / "manifest.csv.unreadable.txt").read_text() == ""
    assert "1 of 5 listed videos missing on disk" in capsys.readouterr().err


def test_strict_makes_missing_videos_fatal(ucf, tmp_path):
    root, splits = ucf
    out = tmp_path / "manifest.csv"
    with pytest.raises(SystemExit, match="strict"):
        ingest("--format", "ucf101", "--root", root, "--splits-dir", splits, "--videos-per-shard", 3,
               "--out", out, "--strict")
    assert not out.exists() and "v_Archery_g09_c01" in (tmp_path / "manifest.csv.missing.txt").read_text()


def test_unreadable_videos_are_reported_not_fatal(ucf, tmp_path):
    root, splits = ucf
    (root / "Archery/v_Archery_g01_c01.avi").write_bytes(b"garbage" * 100)
    out = tmp_path / "manifest.csv"
    ingest("--format", "ucf101", "--root", root, "--splits-dir", splits, "--videos-per-shard", 3,
           "--out", out, "--workers", 2)
    assert len(read(out)) == 3
    report = (tmp_path / "manifest.csv.unreadable.txt").read_text()
    assert report.startswith(f"{root / 'Archery/v_Archery_g01_c01.avi'}\t")


def test_missing_split_files_name_the_setting(ucf, tmp_path):
    root, _ = ucf
    with pytest.raises(SystemExit, match=r"classInd.txt not found in .*UCF-101: set --splits-dir \(datasets.ucf101"):
        ingest("--format", "ucf101", "--root", root, "--videos-per-shard", 3, "--out", tmp_path / "m.csv")


def test_synthetic_uses_the_ucf101_layout(tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    (root / "classInd.txt").write_text("1 Circle\n")
    (root / "trainlist01.txt").write_text("Circle/v_Circle_g01_c01.avi 1\n")
    (root / "testlist01.txt").write_text("Circle/v_Circle_g02_c01.avi\n")
    for name in ["v_Circle_g01_c01", "v_Circle_g02_c01"]:
        tiny_video(root / "Circle" / f"{name}.avi")
    out = tmp_path / "m.csv"
    ingest("--format", "synthetic", "--root", root, "--videos-per-shard", 10, "--out", out)
    assert read(out)["split"].tolist() == ["test", "train"]


def test_hmdb51_codes_0_1_2(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_bytes(
        b"April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\n"
        b"April_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \r\n"
        b"Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \r\n")
    (splits / "cartwheel_test_split1.txt").write_text("Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 1\n")
    (splits / "cartwheel_test_split2.txt").write_text("Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 2\n")
    for video in ["brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0", "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1",
                  "cartwheel/Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8"]:
        tiny_video(root / f"{video}.avi")
    out = tmp_path / "m.csv"
    ingest("--format", "hmdb51", "--root", root, "--splits-dir", splits, "--videos-per-shard", 2, "--out", out)
    manifest = read(out)
    assert manifest["video_id"].tolist() == ["brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1",
                                             "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0",
                                             "cartwheel/Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8"]
    assert manifest["split"].tolist() == ["test", "train", "train"]
    assert manifest["label"].tolist() == [0, 0, 1]
    assert manifest["group"].tolist() == ["April_09_brush_hair_u_nm_np1_ba_goo"] * 2 + [
        "Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad"]
    assert (tmp_path / "m.csv.missing.txt").read_text() == ""  # code 0 is not "missing"


def test_k400_filename_pattern(tmp_path):
    root = tmp_path / "k400"
    csv = tmp_path / "annotations.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "air drumming,-abc123,14,24,train\n"
                   "abseiling,xyz_789,0,10,validate\n"
                   "abseiling,qqq,5,15,test\n")
    tiny_video(root / "train/air drumming/-abc123_000014_000024.mp4")
    tiny_video(root / "val/abseiling/xyz_789_000000_000010.mp4")
    out = tmp_path / "m.csv"
    ingest("--format", "k400", "--root", root, "--annotations", csv, "--videos-per-shard", 1, "--out", out)
    manifest = read(out)
    assert manifest["video_id"].tolist() == ["val/abseiling/xyz_789_000000_000010",
                                             "train/air drumming/-abc123_000014_000024"]
    assert manifest["split"].tolist() == ["test", "train"]  # validation is the evaluation split
    assert manifest["label"].tolist() == [0, 1]  # sorted labels
    assert manifest["group"].tolist() == ["xyz_789", "-abc123"]
    assert manifest["num_frames"].tolist() == [8, 8]
    # a flat layout with underscores, as other downloaders write it
    tiny_video(root / "flat/air_drumming/-abc123_000014_000024.mp4")
    ingest("--format", "k400", "--root", root, "--annotations", csv, "--videos-per-shard", 1, "--out", out,
           "--k400-pattern", "flat/{label_underscored}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4")
    assert read(out)["video_id"].tolist() == ["flat/air_drumming/-abc123_000014_000024"]
    assert (tmp_path / "m.csv.missing.txt").read_text() == f"{root / 'flat/abseiling/xyz_789_000000_000010.mp4'}\n"


def test_shards_do_not_depend_on_listing_order(ucf):
    root, splits = ucf
    entries = ucf101.entries(root, splits)
    first, missing, _ = build_manifest(entries, videos_per_shard=2)
    again, _, _ = build_manifest(entries.sample(frac=1, random_state=0), videos_per_shard=2, workers=2)
    pd.testing.assert_frame_equal(first, again)
    assert first["shard"].tolist() == [0, 0, 1, 1] and len(missing) == 1
