"""Report figures, drawn from small hand-made pipeline outputs: their panels, titles and plotted values; one PNG read back; the HTML table."""

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from coclr import report
from coclr.shards import create_shard, encode_jpegs, flow_store, frame_store, write_video
from coclr.evaluation import retrieval
from coclr.evaluation.features import FORMAT
from coclr.flow.quantise import encode_field, quantise
from coclr.flow.visualise import flow_to_rgb
from conftest import coclr

CLASSES = ["Jump", "Run", "Swim"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def video_ids(split, per_class):
    return [f"{name}/v_{name}_{split}{i}" for name in CLASSES for i in range(per_class)]


@pytest.fixture
def metrics(tmp_path):
    """metrics.csv of an InfoNCE and a CoCLR stage per view, laid out as the trainer writes them."""
    paths = []
    for stage in ("infonce_rgb", "infonce_flow", "coclr_c1_rgb", "coclr_c1_flow"):
        table = pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0, 2.5, 2.2], "instance_acc": [0.2, 0.4, 0.5],
                              "lr": 1e-3, "clips_per_s": 50.0})
        if stage.startswith("coclr"):
            table["mining_purity"] = [0.3, 0.4, 0.5]
        path = tmp_path / "runs" / stage / "metrics.csv"
        path.parent.mkdir(parents=True)
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


def features_file(path, method, view, dim=8):
    """A features file as `coclr features` writes it: train/test features of 4 videos per class (test: 3)."""
    torch.manual_seed(len(method) + len(view))
    splits = {}
    for split, per_class in (("train", 4), ("test", 3)):
        labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)
        features = torch.randn(len(labels), dim) + 3 * torch.nn.functional.one_hot(labels, dim)
        splits[split] = {"features": features, "labels": labels, "video_ids": video_ids(split, per_class)}
    torch.save({"format": FORMAT, "method": method, "view": view, "checkpoint": None, **splits}, path)
    return path


@pytest.fixture
def shards(tmp_path):
    """A frame shard and its flow shard (documented HDF5 layout) of every video, and a manifest."""
    rng = np.random.default_rng(0)
    ids = video_ids("train", 4) + video_ids("test", 3)
    frames_path, flow_path = tmp_path / "frames.h5", tmp_path / "flow.h5"
    with create_shard(frames_path) as frames, create_shard(flow_path) as flow:
        for video_id in ids:
            for f, elements in ((frames, encode_jpegs(rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8), 90)),
                                (flow, [encode_field(quantise(rng.normal(0, 3, (24, 24, 2)))) for _ in range(4)])):
                write_video(f, video_id, elements)
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"video_id": ids, "class_name": [v.split("/")[0] for v in ids]}).to_csv(manifest, index=False)
    return {"frames": [frames_path], "flow": [flow_path], "manifest": manifest}


def lines_of(ax) -> dict:
    """Label -> (x, y) of every line drawn on an axis."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_training_curves_plot_each_stage_metrics(metrics):
    fig = report.curves(metrics)
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["RGB stages", "flow stages"]
    assert [axes[0, 0].get_ylabel(), axes[1, 0].get_ylabel()] == ["loss", "instance accuracy"]
    for column in range(2):  # one line per stage of the column's view, the values of its metrics.csv
        assert lines_of(axes[0, column]) == {"InfoNCE": ([1, 2, 3], [3.0, 2.5, 2.2]),
                                             "CoCLR, cycle 1": ([1, 2, 3], [3.0, 2.5, 2.2])}
        assert lines_of(axes[1, column])["CoCLR, cycle 1"] == ([1, 2, 3], [0.2, 0.4, 0.5])
    assert [t.get_text() for t in axes[0, 1].get_legend().get_texts()] == ["InfoNCE", "CoCLR, cycle 1"]


def test_curves_of_several_seeds_draw_their_mean_a_band_and_the_knn_monitor(tmp_path):
    """Two seeds of one stage (seed 1 in its `seed1/` run folder): the line is their mean, the band spans
    them, and the kNN row plots only the epochs the monitor ran."""
    paths = []
    for seed_dir, shift in (("", 0.0), ("seed1/", 1.0)):
        table = pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0 + shift, 2.5 + shift, 2.2 + shift],
                              "instance_acc": [0.2, 0.4, 0.5], "knn_top1": [None, 0.3 + shift / 10, None]})
        path = tmp_path / "runs" / f"{seed_dir}infonce_rgb" / "metrics.csv"
        path.parent.mkdir(parents=True)
        table.to_csv(path, index=False)
        paths.append(path)
    assert report.stage(paths[1]) == ("infonce", "rgb", 1)
    fig = report.curves(paths)
    axes = np.array(fig.axes).reshape(3, 2)
    assert axes[2, 0].get_ylabel() == "kNN top-1"
    assert lines_of(axes[0, 0]) == {"InfoNCE": ([1, 2, 3], [3.5, 3.0, 2.7])}
    (band,) = axes[0, 0].collections
    assert band.get_paths()[0].vertices[:, 1].min() == 2.2 and band.get_paths()[0].vertices[:, 1].max() == 4.0
    assert lines_of(axes[2, 0])["InfoNCE"] == ([2], [pytest.approx(0.35)])
    assert "mean over 2 seeds" in fig.texts[0].get_text()


def test_mining_purity_has_a_line_per_coclr_stage(metrics):
    fig = report.purity([p for p in metrics if "coclr" in str(p)])
    (ax,) = fig.axes
    assert lines_of(ax) == {"CoCLR, cycle 1, RGB": ([1, 2, 3], [0.3, 0.4, 0.5]),
                            "CoCLR, cycle 1, flow": ([1, 2, 3], [0.3, 0.4, 0.5])}
    assert ax.get_ylim() == (0, 1) and len(ax.get_legend().get_texts()) == 2


def test_tsne_has_a_panel_per_method_and_view(tmp_path):
    paths = [features_file(tmp_path / f"{m}_{v}.pt", m, v) for m in ("infonce", "coclr_c1") for v in ("rgb", "flow")]
    fig = report.tsne(paths)
    assert [ax.get_title() for ax in fig.axes] == ["InfoNCE, RGB", "InfoNCE, flow", "CoCLR, cycle 1, RGB",
                                                   "CoCLR, cycle 1, flow"]
    labels = np.arange(len(CLASSES)).repeat(3)
    for ax in fig.axes:  # every test video, coloured by its class
        (points,) = ax.collections
        assert points.get_offsets().shape == (len(labels), 2)
        assert np.isfinite(points.get_offsets()).all()
        assert points.get_array().tolist() == labels.tolist()


def test_retrieval_grid_shows_each_query_and_its_nearest_videos(shards, tmp_path):
    paths = [features_file(tmp_path / f"{m}_rgb.pt", m, "rgb") for m in ("coclr_c1", "infonce")]
    fig = report.retrieval(paths, shards["frames"], shards["manifest"], queries=2)
    rows = np.array(fig.axes).reshape(2 * 2, report.NEIGHBOURS + 1)  # (models x queries, query + neighbours)
    for m, path in enumerate(paths):
        model = torch.load(path, weights_only=True)
        picked = [0, len(model["test"]["video_ids"]) - 1]  # two queries: the first and the last test video
        sim = retrieval.similarity(model["test"]["features"][picked], model["train"]["features"])
        for q, query in enumerate(picked):
            row, query_class = rows[2 * m + q], model["test"]["video_ids"][query].split("/")[0]
            assert row[0].get_title() == f"{report.method_title(model['method'])}\n{query_class}"
            nearest = sim[q].topk(report.NEIGHBOURS).indices.tolist()
            expected = [model["train"]["video_ids"][i].split("/")[0] for i in nearest]
            assert [ax.get_title() for ax in row[1:]] == expected
            for ax, name in zip(row[1:], expected):  # framed green when the classes agree, else red
                colour = report.SAME if name == query_class else report.DIFFERENT
                assert ax.spines["top"].get_edgecolor() == to_rgba(colour)
            assert all(ax.get_images()[0].get_array().shape == (24, 24, 3) for ax in row)


def test_retrieval_figure_through_the_command_line_is_a_drawn_png(shards, tmp_path):
    paths = [features_file(tmp_path / f"{m}_rgb.pt", m, "rgb") for m in ("coclr_c1", "infonce")]
    out = tmp_path / "retrieval.png"
    coclr("report-figures", "retrieval", "--features", *paths, "--frames", *shards["frames"],
          "--manifest", shards["manifest"], "--queries", 2, "--out", out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(out)
    height, width = image.shape[:2]
    assert 0.9 < (height / width) / (4 * 1.8 / (6 * 1.6)) < 1.3  # 4 rows of 6 panels (figsize), tight box
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 100  # frames drawn, not a blank canvas


def test_flow_figure_shows_frames_their_flow_and_the_colour_key(shards):
    fig = report.flow(shards["frames"], shards["flow"], videos=2)
    rows = np.array(fig.axes).reshape(2, 3)
    frames, fields = frame_store(shards["frames"]), flow_store(shards["flow"])
    ids = sorted(fields.index)
    for row, video_id in zip(rows, [ids[0], ids[-1]]):
        t = fields.num_frames(video_id) // 2
        assert row[0].get_title() == f"{video_id}\nframe {t}" and row[1].get_title() == f"flow {t} -> {t + 1}"
        np.testing.assert_array_equal(row[0].get_images()[0].get_array(), frames.read(video_id, t, t + 1)[0].numpy())
        drawn = flow_to_rgb(fields.read(video_id, t, t + 1)[0].numpy().transpose(2, 0, 1))
        np.testing.assert_array_equal(row[1].get_images()[0].get_array(), drawn)
    assert rows[0, 2].get_title() == "direction and magnitude" and rows[0, 2].get_images()[0].get_array().shape[:2] == (64, 64)
    assert not rows[1, 2].axison and not rows[1, 2].get_images()


def test_ablation_table_as_html():
    ablation = {"tasks": ["linear_probe"], "rows": [
        {"title": "InfoNCE", "linear_probe": {"rgb": 46.83, "flow": 60.0, "two_stream": None}}]}
    html = report.ablation_html(ablation)
    assert "<table" in html and "linear probe top-1, RGB" in html
    assert "<td>46.8</td>" in html and "<td>-</td>" in html
    assert html.count("<th>") == 1 + 3 and html.count("<td>") == 1 + 3  # method, then each view of the task
    spread = {"std": 2.0, "min": 44.0, "max": 49.0, "n": 3}
    ablation["rows"][0]["spread"] = {"linear_probe": {"rgb": spread, "flow": None, "two_stream": None}}
    assert "<td>46.8 ± 2.0 (44.0-49.0)</td>" in report.ablation_html(ablation)


@pytest.mark.parametrize("videos", [1, 2, 3])
def test_tsne_of_a_tiny_test_split_lays_out_every_video(videos):
    """A split with a handful of test videos (the paper-preset test has two) still gets its panel."""
    points = report.embed(torch.randn(videos, 16))
    assert points.shape == (videos, 2) and np.isfinite(points).all()
