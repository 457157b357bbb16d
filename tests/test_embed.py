"""``coclr embed``: the features of ``coclr features``, for any videos, as Parquet or NPZ."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from coclr.cli import main
from coclr.config import complete_settings
from coclr.embed import load_embeddings
from coclr.evaluation.features import load_features
from coclr.models import build_backbone, save_model, view_arch
from coclr.models.encoder import Encoder
from conftest import FAST_FLOW
from realdata import cut
from test_importer import encoder_q, moco_state, reference_file  # noqa: F401 (encoder_q: a fixture)

MODEL = {"width": 0.25, "depth": 3, "flow_channels": 2}
CLIP = {"frames": 8, "stride": 1, "size": 32, "eval_stride": 4, "eval_pooling": "normalised_mean"}
FRAMES = {"fps": None, "short_side": None, "jpeg_quality": 90}
TVL1 = dict(p.split("=") for p in FAST_FLOW[1::2])
FLOW = {"method": "tvl1", "device": "cpu", "batch_size": 64, "compile": False, "params": TVL1}


def settings(**extra):
    return json.dumps(complete_settings({"model": MODEL, "clip": CLIP, "resources": {"threads": 1}, **extra}))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three real clips (one shorter than a clip, one in a folder with a space), ingested, framed and flowed."""
    root = tmp_path_factory.mktemp("embed")
    videos = root / "my clips"
    cut("bikes", videos / "ride.mp4", 0, 20, size=(48, 40), codec="h264")
    cut("carphone", videos / "phone call.mkv", 0, 14, size=(48, 40), codec="h264")
    cut("bikes", videos / "short.mp4", 50, 6, size=(48, 40), codec="h264")
    listing = root / "videos.csv"
    listing.write_text("path,label,split\nmy clips/ride.mp4,bike,train\nmy clips/phone call.mkv,phone,test\n"
                       "my clips/short.mp4,bike,train\n")
    manifest = root / "manifest.csv"
    main(["ingest", "--format", "folder", "--root", str(listing), "--test-fraction", "0.3", "--videos-per-shard", "10",
          "--out", str(manifest)])
    main(["frames", "--manifest", str(manifest), "--shard", "0", "--out", str(root / "frames.h5")])
    main(["flow", "--frames", str(root / "frames.h5"), "--out", str(root / "flow.h5"), "--threads", "1", *FAST_FLOW])
    checkpoints = {}
    for view in ("rgb", "flow"):
        torch.manual_seed({"rgb": 1, "flow": 2}[view])
        arch = view_arch(view, MODEL)
        checkpoints[view] = root / f"model_{view}.pt"
        save_model(checkpoints[view], Encoder(build_backbone(arch)).state_dict(), view, arch)
    return {"root": root, "videos": videos, "listing": listing, "manifest": manifest, "checkpoints": checkpoints}


def features(clips, view, tmp_path):
    out = tmp_path / f"{view}.pt"
    main(["features", "--view", view, "--checkpoint", str(clips["checkpoints"][view]), "--manifest",
          str(clips["manifest"]), "--frames", str(clips["root"] / "frames.h5"), "--flow", str(clips["root"] / "flow.h5"),
          "--out", str(out), "--settings", settings()])
    data = load_features(out)
    manifest = pd.read_csv(clips["manifest"]).set_index("video_id")
    ids = data["train"]["video_ids"] + data["test"]["video_ids"]
    vectors = torch.cat([data["train"]["features"], data["test"]["features"]]).numpy()
    return dict(zip(manifest.loc[ids, "path"], vectors))


def embed(clips, view, out, *extra, videos=None):
    checkpoints = [str(clips["checkpoints"][v]) for v in (("rgb", "flow") if view == "two_stream" else (view,))]
    main(["embed", "--view", view, "--checkpoint", *checkpoints, "--videos", str(videos or clips["videos"]),
          "--out", str(out), "--settings", settings(frames=FRAMES, flow=FLOW), *extra])
    return load_embeddings(out)


@pytest.mark.parametrize("view", ["rgb", "flow"])
def test_embed_equals_features(clips, view, tmp_path, capsys):
    table, vectors, record = embed(clips, view, tmp_path / "e.parquet")
    expected = features(clips, view, tmp_path)
    assert sorted(table["path"]) == sorted(expected)
    for path, vector in zip(table["path"], vectors):
        np.testing.assert_allclose(vector, expected[path], rtol=1e-4, atol=1e-5)
    assert record["view"] == view and record["checkpoints"][0]["sha256"] and record["failures"] == []
    assert "embed: 100%" in capsys.readouterr().err  # the progress bar


def test_two_stream_per_window_npz_from_a_manifest(clips, tmp_path):
    table, vectors, record = embed(clips, "two_stream", tmp_path / "e.npz", "--per-window", videos=clips["manifest"])
    rgb, flow = features(clips, "rgb", tmp_path), features(clips, "flow", tmp_path)
    ride = str(clips["videos"] / "ride.mp4")
    windows = table[table["path"] == ride]
    # 20 frames (19 flow fields), 8-frame windows every 4 frames: starts 0, 4, 8 in both views
    assert windows["window"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(windows["start_s"], [0, 0.16, 0.32])
    np.testing.assert_allclose(windows["end_s"], [0.32, 0.48, 0.64])
    assert vectors.shape[1] == len(rgb[ride]) + len(flow[ride])
    np.testing.assert_allclose(np.linalg.norm(vectors[:, :len(rgb[ride])], axis=1), 1, rtol=1e-5)
    short = table[table["path"] == str(clips["videos"] / "short.mp4")]
    assert len(short) == 1 and short["end_s"].iloc[0] == pytest.approx(6 / 25)  # shorter than a clip: one window
    assert record["per_window"] and len(record["checkpoints"]) == 2


def test_bad_videos_are_skipped_and_named(clips, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.mp4").write_bytes((clips["videos"] / "ride.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00" * 1000)
    table, _, record = embed(clips, "rgb", tmp_path / "e.parquet", videos=folder)
    assert table["path"].tolist() == [str(folder / "good.mp4")]
    assert record["failures"][0]["path"] == str(folder / "broken.mp4")
    err = capsys.readouterr().err
    assert f"embed: skipped {folder / 'broken.mp4'}: not a readable video" in err
    assert "embed rgb: 1 of 2 videos (1 skipped)" in err


def test_wrong_checkpoints_are_refused(clips, tmp_path):
    with pytest.raises(SystemExit, match=r"--view two_stream needs a flow checkpoint too"):
        main(["embed", "--view", "two_stream", "--checkpoint", str(clips["checkpoints"]["rgb"]), "--videos",
              str(clips["videos"]), "--out", str(tmp_path / "e.npz"), "--settings", settings(frames=FRAMES, flow=FLOW)])
    with pytest.raises(SystemExit, match=r"must end in .parquet or .npz"):
        embed(clips, "rgb", tmp_path / "e.csv")


def test_embed_with_a_checkpoint_of_the_authors(clips, encoder_q, tmp_path):  # noqa: F811
    """A released InfoNCE RGB file, converted by import-weights: the full S3D's 1024-d features."""
    state = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in encoder_q.items()}  # randn: < 0
    reference_file(tmp_path / "infonce-rgb.pth.tar", moco_state(state))
    main(["import-weights", str(tmp_path / "infonce-rgb.pth.tar"), str(tmp_path / "rgb.pt")])
    main(["embed", "--view", "rgb", "--checkpoint", str(tmp_path / "rgb.pt"), "--videos",
          str(clips["videos"] / "short.mp4"), "--out", str(tmp_path / "e.npz"), "--settings", settings(frames=FRAMES, flow=FLOW)])
    table, vectors, record = load_embeddings(tmp_path / "e.npz")
    assert table["path"].tolist() == [str(clips["videos"] / "short.mp4")] and vectors.shape == (1, 1024)
    assert np.isfinite(vectors).all() and record["checkpoints"][0]["meta"]["epoch"] == 299
