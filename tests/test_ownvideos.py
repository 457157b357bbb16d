"""A researcher's own videos: the folder format, and each kind of bad input, on real footage."""

import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest

from coclr.cli import main
from coclr.errors import CoclrError
from coclr.shards import list_videos
from coclr.ingest import UNLABELLED
from coclr.ingest.folder import held_out
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
    assert (manifest["split"] == "train").all()  # nothing to evaluate: every video pretrains
    assert (manifest["group"] == "session1").sum() == 2
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


# -- bad input: each named with its file (and line), the rest processed ---------------------

def test_empty_audio_only_and_undecodable_files(tmp_path, capsys):
    root = tmp_path / "videos"
    cut("bikes", root / "Biking" / "good.mp4", 0, 8, codec="h264")
    bad_files(root / "Biking")
    out = tmp_path / "m.csv"
    ingest(root, out)
    assert read(out)["video_id"].tolist() == ["Biking/good"]
    reasons = dict(line.split("\t") for line in (tmp_path / "m.csv.unreadable.txt").read_text().splitlines())
    assert reasons[str(root / "Biking/empty.mp4")] == "empty file (0 bytes)"
    assert reasons[str(root / "Biking/audio only.mp4")] == "no video stream (the file holds only audio)"
    assert reasons[str(root / "Biking/noise.mp4")].startswith("not a readable video (")
    assert "Invalid data found" in reasons[str(root / "Biking/noise.mp4")]
    err = capsys.readouterr().err
    assert "ingest: 3 of 4 listed videos unreadable" in err
    assert f"  {root / 'Biking/audio only.mp4'}: no video stream" in err


def test_duplicate_video_ids_name_both(tmp_path, capsys):
    root = tmp_path / "videos"
    cut("bikes", root / "Biking" / "ride.mp4", 0, 8, codec="h264")
    cut("bikes", root / "Biking" / "ride.mkv", 0, 8, codec="h264")
    cut("bikes", root / "Biking" / "other.mp4", 20, 8, codec="h264")
    out = tmp_path / "m.csv"
    ingest(root, out)
    assert read(out)["video_id"].tolist().count("Biking/ride") == 1 and len(read(out)) == 2
    rejected = (tmp_path / "m.csv.rejected.txt").read_text()
    assert rejected == (f"{root / 'Biking/ride.mp4'}\tvideo id 'Biking/ride' is already listed at "
                        f"{root / 'Biking/ride.mkv'} (ids are paths without their suffix): remove or rename one\n")
    assert "ingest: 1 listing lines rejected" in capsys.readouterr().err


def test_duplicate_lines_in_a_split_file(tmp_path):
    from test_ingest import tiny_video

    root, splits = tmp_path / "UCF-101", tmp_path / "lists"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 Archery\n")
    (splits / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\nArchery/v_Archery_g02_c01.avi 1\n")
    (splits / "testlist01.txt").write_text("Archery/v_Archery_g03_c01.avi\nArchery/v_Archery_g01_c01.avi\n")
    for g in (1, 2, 3):
        tiny_video(root / f"Archery/v_Archery_g0{g}_c01.avi")
    out = tmp_path / "m.csv"
    main(["ingest", "--format", "ucf101", "--root", str(root), "--splits-dir", str(splits), "--videos-per-shard", "5",
          "--out", str(out)])
    assert len(read(out)) == 3
    assert (tmp_path / "m.csv.rejected.txt").read_text() == (
        f"{splits / 'testlist01.txt'} line 2\tvideo id 'Archery/v_Archery_g01_c01' is already listed at "
        f"{splits / 'trainlist01.txt'} line 1 (ids are paths without their suffix): remove or rename one\n")


def test_csv_missing_a_column(tmp_path):
    listing = tmp_path / "videos.csv"
    listing.write_text("file,label\na.mp4,bike\n")
    with pytest.raises(SystemExit, match=r"videos.csv line 1: no `path` column \(header: file,label\); the first line "
                                         r"must name the columns: path, and optionally label, split, group"):
        ingest(listing, tmp_path / "m.csv")
    listing.write_text("path,lable\na.mp4,bike\n")
    with pytest.raises(SystemExit, match=r"line 1: unknown column\(s\) \['lable'\]; known: path, label, split, group"):
        ingest(listing, tmp_path / "m.csv")


def test_csv_rows_missing_a_cell(tmp_path):
    cut("bikes", tmp_path / "a.mp4", 0, 8, codec="h264")
    cut("bikes", tmp_path / "b.mp4", 20, 8, codec="h264")
    listing = tmp_path / "videos.csv"
    listing.write_text("path,label,split\na.mp4,bike,train\nb.mp4\n,bike,test\na.mp4,bike,val\n")
    out = tmp_path / "m.csv"
    ingest(listing, out)
    assert read(out)["video_id"].tolist() == ["a"]
    assert (tmp_path / "m.csv.rejected.txt").read_text() == (
        f"{listing} line 3\tempty `label`: every row of a CSV with a label column needs one\n"
        f"{listing} line 4\tempty `path`\n"
        f"{listing} line 5\tsplit 'val' is not train or test (or empty: held out by hash)\n")


def archery_lists(tmp_path, class_ind, trainlist, testlist):
    """A UCF101 tree holding two Archery videos, with split files as given: (root, splits dir)."""
    from test_ingest import tiny_video

    root, splits = tmp_path / "UCF-101", tmp_path / "lists"
    splits.mkdir()
    (splits / "classInd.txt").write_text(class_ind)
    (splits / "trainlist01.txt").write_text(trainlist)
    (splits / "testlist01.txt").write_text(testlist)
    for g in (1, 2):
        tiny_video(root / f"Archery/v_Archery_g0{g}_c01.avi")
    return root, splits


def ingest_ucf101(root, splits, out, *extra):
    main(["ingest", "--format", "ucf101", "--root", str(root), "--splits-dir", str(splits), "--videos-per-shard", "5",
          "--out", str(out), *extra])


def test_label_not_in_classind(tmp_path, capsys):
    cut("bikes", tmp_path / "a.mp4", 0, 8, codec="h264")
    cut("carphone", tmp_path / "b.mp4", 0, 8, codec="h264")
    (tmp_path / "classInd.txt").write_text("1 riding a bike\n")
    listing = tmp_path / "videos.csv"
    listing.write_text("path,label\na.mp4,riding a bike\nb.mp4,phoning\n")
    out = tmp_path / "m.csv"
    ingest(listing, out, "--classes", tmp_path / "classInd.txt")
    assert read(out)["class_name"].tolist() == ["riding a bike"]
    message = f"{listing} line 3: label 'phoning' is not in {tmp_path / 'classInd.txt'}: add it there or fix the label"
    assert message in capsys.readouterr().err
    # a UCF101 split file naming a class that classInd.txt lacks
    root, splits = archery_lists(tmp_path, "1 Archery\n",
                                 "Archery/v_Archery_g01_c01.avi 1\nBowling/v_Bowling_g01_c01.avi 2\n",
                                 "Archery/v_Archery_g02_c01.avi\n")
    ingest_ucf101(root, splits, out)
    assert len(read(out)) == 2
    assert (tmp_path / "m.csv.rejected.txt").read_text() == (
        f"{splits / 'trainlist01.txt'} line 2\tclass folder 'Bowling' is not in {splits / 'classInd.txt'}\n")


def test_split_file_lists_a_missing_class_folder(tmp_path, capsys):
    root, splits = archery_lists(tmp_path, "1 Archery\n2 Bowling\n",
                                 "Archery/v_Archery_g01_c01.avi 1\nBowling/v_Bowling_g01_c01.avi 2\n",
                                 "Archery/v_Archery_g02_c01.avi\nBowling/v_Bowling_g02_c01.avi\n")
    out = tmp_path / "m.csv"
    ingest_ucf101(root, splits, out)
    assert len(read(out)) == 2
    err = capsys.readouterr().err
    assert f"  {splits / 'trainlist01.txt'} line 2: class folder 'Bowling' does not exist under {root}" in err
    assert f"  {splits / 'testlist01.txt'} line 2: class folder 'Bowling' does not exist under {root}" in err
    with pytest.raises(SystemExit, match=r"trainlist01.txt line 2: class folder 'Bowling' does not exist"):
        ingest_ucf101(root, splits, out, "--strict")


def test_hmdb51_split_file_of_a_missing_class_folder(tmp_path, capsys):
    from test_ingest import tiny_video

    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a_0.avi 1\na_1.avi 2\n")
    (splits / "cartwheel_test_split1.txt").write_text("b_0.avi 1\n")
    tiny_video(root / "brush_hair/a_0.avi")
    tiny_video(root / "brush_hair/a_1.avi")
    out = tmp_path / "m.csv"
    main(["ingest", "--format", "hmdb51", "--root", str(root), "--splits-dir", str(splits), "--videos-per-shard", "5",
          "--out", str(out)])
    assert len(read(out)) == 2
    assert f"{splits / 'cartwheel_test_split1.txt'}: class folder 'cartwheel' does not exist under {root}" in \
        capsys.readouterr().err


# -- the workflow: unlabelled videos pretrain and embed, labelled ones are evaluated ------------

def folder_config(root):
    return [f"datasets={{mine: {{format: folder, root: '{root}'}}}}", "dataset=mine"]


def folder_configfile(path, root, **extra):
    """A --configfile naming the folder dataset (YAML written by a YAML writer: any character in the path)."""
    import yaml

    from test_workflow import TINY_CONFIG

    merged = yaml.safe_load(TINY_CONFIG.read_text())
    merged.update({"datasets": {"mine": {"format": "folder", "root": str(root)}}, "dataset": "mine", **extra})
    path.write_text(yaml.safe_dump(merged, allow_unicode=True))
    return path


@pytest.mark.slow
def test_workflow_unlabelled_folder_with_spaces_and_non_ascii(tmp_path):
    """A folder with a space, an apostrophe and non-ASCII characters, and settings with an apostrophe:
    every command line quotes them (the settings travel shell-quoted), through a training job."""
    from test_workflow import planned_jobs, snakemake

    root = tmp_path / "O'Brien's vidéos"
    cut("bikes", root / "première prise.mp4", 0, 12, size=(48, 40), codec="h264")
    cut("carphone", root / "take two.webm", 0, 12, size=(48, 40), codec="vp8")
    for n in range(14):  # the preflight refuses a set where the tiny config's queue (16) never fills in a stage
        cut("bikes", root / f"more_{n}.mp4", 12 * n, 12, size=(48, 40), codec="h264")
    work = tmp_path / "work"
    configfile = folder_configfile(tmp_path / "mine.yaml", root,
                                   resources={"gpu_partition": "Brien's 'gpu' partition; echo broken"})
    snakemake(work, "--cores", 1, "models/mine/infonce_rgb.pt", configfile=configfile)
    with h5py.File(work / "data/mine/frames/shard_00000.h5", "r") as f:
        assert {"première prise", "take two"} <= set(list_videos(f)) and len(list_videos(f)) == 16
    assert (read(work / "data/mine/manifest.csv")["label"] == UNLABELLED).all()
    assert (work / "models/mine/infonce_rgb.pt").exists()
    assert "broken" not in (work / "logs/mine/infonce_rgb.log").read_text()
    jobs = planned_jobs(snakemake(work, "-n", configfile=configfile).stdout)
    assert jobs["embed"] == 1 and jobs["cotrain"] == 4 and jobs["pretrain"] == 1  # flow InfoNCE left; no UberNCE
    assert not {"linear_probe", "finetune", "retrieval", "ablation"} & set(jobs)


@pytest.mark.slow
def test_workflow_labelled_folder_is_evaluated(own, tmp_path):
    from test_workflow import planned_jobs, snakemake

    work = tmp_path / "work"
    snakemake(work, "--cores", 1, "data/mine/manifest.csv", "--config", *folder_config(own))
    jobs = planned_jobs(snakemake(work, "-n", "--config", *folder_config(own)).stdout)
    assert jobs["linear_probe"] > 0 and jobs["pretrain"] == 4 and "embed" not in jobs
    log = (work / "logs/mine/ingest.log").read_text()
    assert "0 of 6 videos are shorter than one clip (4 frames)" in log  # the tiny preset's clip
    assert "ingest: no test videos" in log  # 6 videos, none held out by the hash: said at once


def test_unlabelled_videos_are_refused_by_label_steps(tmp_path):
    from coclr.ingest import require_labels

    with pytest.raises(CoclrError, match=r"the linear probe needs labelled videos, but features.pt has unlabelled ones "
                                         r"\(label -1\): give the dataset class folders or a `label` column in its CSV"):
        require_labels([UNLABELLED, UNLABELLED], "features.pt", "the linear probe")
    require_labels([0, 1], "features.pt", "the linear probe")


def test_hold_out_by_group_hash(tmp_path):
    from coclr.ingest.folder import csv_entries

    listing = tmp_path / "videos.csv"
    listing.write_text("path,label,group\n" + "".join(f"v{i}.mp4,c{i % 2},g{i % 7}\n" for i in range(40)))
    entries = csv_entries(listing, test_fraction=0.3)
    assert (entries.groupby("group")["split"].nunique() == 1).all()  # a group never straddles the split
    for group, split in entries.groupby("group")["split"].first().items():
        assert split == ("test" if held_out(group, 0.3) else "train")
    assert set(entries["split"]) == {"train", "test"}
    assert csv_entries(listing, test_fraction=0.3).equals(entries)  # deterministic
