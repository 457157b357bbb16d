"""TV-L1 flow: agreement with OpenCV on pairs of known flow, storage, shards."""

import json

import cv2
import h5py
import numpy as np
import pytest
import torch
import yaml

from coclr.shards import create_shard, encode_jpegs, flow_store, frame_store, write_video
from coclr.config import SCHEMA
from coclr.flow import METHODS, compute_flow, resolve_method
from coclr.flow.quantise import BOUND, decode_field, dequantise, encode_field, quantise
from coclr.flow import extract
from coclr.flow.extract import flow_gray, flow_shard
from coclr.flow.tvl1 import _median
from coclr.flow.visualise import flow_to_rgb
from tests.conftest import coclr
from tests.flow_ground_truth import endpoint_error, make_pair, make_pairs
from tests.realdata import gray_frames, real_pairs

STEP = 2 * BOUND / 255


@pytest.fixture(scope="module")
def known_pairs():
    return make_pairs(5, height=96, width=128, seed=1)


OURS = ("tvl1", "tvl1_numba")  # the two implementations tested against OpenCV's


@pytest.mark.parametrize("method", OURS)
def test_endpoint_error_within_5_percent_of_opencv(known_pairs, method):
    prev, nxt, truth = known_pairs
    ours = compute_flow(prev, nxt, method=method)
    reference = compute_flow(prev, nxt, method="tvl1_opencv")
    assert endpoint_error(ours, truth) <= 1.05 * endpoint_error(reference, truth)
    assert endpoint_error(ours, reference) < 0.05


@pytest.mark.parametrize("method", OURS)
def test_real_footage_flow_is_opencvs(method):
    """Consecutive frames of real camera footage (both clips, 86x64): mean end-point distance to
    OpenCV's flow of the same pairs under 0.05 px, on flow that moves by a pixel or more."""
    prev, nxt = real_pairs(64, 86, 3)
    reference = compute_flow(prev, nxt, method="tvl1_opencv")
    assert np.abs(reference).max() > 1
    assert endpoint_error(compute_flow(prev, nxt, method=method), reference) < 0.05


@pytest.mark.parametrize("method", OURS)
def test_translation_is_recovered(method):
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.uniform(0, 255, (120, 150)).astype(np.float32), (0, 0), 2.0) * 4 - 384
    scene = np.clip(scene + 128, 0, 255)
    shift = np.float32([[1, 0, 3.5], [0, 1, -2.25]])  # nxt(p) = scene(p - shift): content moves by +shift
    nxt = cv2.warpAffine(scene, shift, (150, 120), flags=cv2.INTER_CUBIC)
    flow = compute_flow(scene[None], nxt[None], method=method)[0]
    interior = flow[:, 20:-20, 20:-20]
    assert np.allclose(np.median(interior, axis=(1, 2)), [3.5, -2.25], atol=0.05)


@pytest.mark.parametrize("method", OURS)
def test_zero_motion_gives_zero_flow(method):
    prev, _, _ = make_pair(7, 64, 80)
    flow = compute_flow(prev[None], prev[None], method=method)
    assert np.abs(flow).max() < 1e-3


def test_batch_equals_pair_by_pair(known_pairs):
    prev, nxt, _ = known_pairs
    batched = compute_flow(torch.from_numpy(prev[:3]), torch.from_numpy(nxt[:3]))
    single = torch.cat([compute_flow(torch.from_numpy(prev[i : i + 1]), torch.from_numpy(nxt[i : i + 1])) for i in range(3)])
    assert isinstance(batched, torch.Tensor) and batched.dtype == torch.float32
    assert torch.allclose(batched, single, atol=1e-4)


@pytest.mark.parametrize("method", OURS)
def test_cpu_results_repeat_exactly(method):
    prev, nxt, _ = make_pairs(2, 64, 80, seed=2)
    assert np.array_equal(compute_flow(prev, nxt, method=method), compute_flow(prev, nxt, method=method))


def test_median_matches_opencv_including_borders():
    u = np.random.default_rng(0).normal(size=(2, 30, 41)).astype(np.float32)
    ours = _median(torch.from_numpy(u)[None], 5)[0].numpy()
    assert np.array_equal(ours, np.stack([cv2.medianBlur(c, 5) for c in u]))


@pytest.mark.parametrize(
    "prev, nxt, message",
    [
        (np.zeros((2, 32, 32), np.uint8), np.zeros((3, 32, 32), np.uint8), "same shape"),
        (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), "(N, H, W)"),
        (np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32, 3), np.uint8), "(N, H, W)"),
        (np.zeros((1, 32, 32), np.int32), np.zeros((1, 32, 32), np.int32), "uint8 or float"),
        ([[[0]]], [[[0]]], "numpy array or torch tensor"),
    ],
)
def test_bad_input_is_rejected(prev, nxt, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compute_flow(prev, nxt)


def test_bad_method_or_parameter_is_rejected():
    frames = np.zeros((1, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="farneback"):
        compute_flow(frames, frames, method="farneback")
    with pytest.raises(ValueError, match="lambda"):
        compute_flow(frames, frames, lambda_=-1)
    with pytest.raises(ValueError, match="sigma"):
        compute_flow(frames, frames, sigma=1.0)
    for method in ("tvl1_numba", "tvl1_opencv"):  # cv2.medianBlur filters float flow with 3 or 5 only
        with pytest.raises(ValueError, match="median_filtering=7: method tvl1_.* use method tvl1"):
            compute_flow(frames, frames, method=method, median_filtering=7)
    assert compute_flow(frames, frames, method="tvl1", median_filtering=7).shape == (1, 2, 32, 32)


def test_quantisation_round_trip_within_half_a_step():
    flow = np.random.default_rng(0).uniform(-25, 25, size=(40, 50, 2)).astype(np.float32)
    codes = quantise(flow)
    assert codes.dtype == np.uint8
    assert np.abs(dequantise(codes) - np.clip(flow, -BOUND, BOUND)).max() <= STEP / 2 + 1e-5
    assert np.array_equal(decode_field(encode_field(codes)), codes)


def _frame_shard(path, videos, failed):
    """A frame shard in the layout of coclr.frames: JPEG frames under videos/<id>."""
    with create_shard(path) as f:
        for video_id, frames in videos.items():
            write_video(f, video_id, encode_jpegs(frames, 95), fps=25.0, height=frames.shape[1], width=frames.shape[2])
        f.attrs["failures"] = json.dumps([{"video": v, "error": "unreadable"} for v in failed])


def _moving_video(seed, n_frames, height=40, width=48):
    """RGB frames of one scene drifting by one pixel a frame."""
    prev, _, _ = make_pair(seed, height + n_frames, width + n_frames, magnitude=0.0)
    return np.stack([np.repeat(prev[t : t + height, t : t + width, None], 3, axis=2) for t in range(n_frames)])


def test_flow_shard_aligns_with_frame_shard(tmp_path):
    videos = {"Run/v_Run_g01_c01": _moving_video(0, 4), "Jump/v_Jump_g02_c01": _moving_video(1, 3),
              "Jump/v_Jump_g03_c01": _moving_video(2, 1)}
    _frame_shard(tmp_path / "frames.h5", videos, failed=["Jump/v_Jump_g02_c01"])
    flow_shard(tmp_path / "frames.h5", tmp_path / "flow.h5", batch_size=2)
    gray = flow_gray(frame_store([tmp_path / "frames.h5"]).read("Run/v_Run_g01_c01", 2, 4).numpy())
    with h5py.File(tmp_path / "flow.h5") as f:
        assert f.attrs["bound"] == BOUND and f.attrs["method"] == "tvl1"
        assert json.loads(f.attrs["parameters"])["tau"] == 0.25
        assert f.attrs["source"] == str(tmp_path / "frames.h5") and f.attrs["encoding"]
        assert "Jump/v_Jump_g02_c01" not in f["videos"]
        run = f["videos/Run/v_Run_g01_c01"].attrs
        assert len(run["offsets"]) == 4  # 3 fields
        assert run["fps"] == 25.0 and (run["height"], run["width"]) == (40, 48)  # the frame shard's, passed on
        assert len(f["videos/Jump/v_Jump_g03_c01"].attrs["offsets"]) == 1  # none
    flow = flow_store([tmp_path / "flow.h5"])
    assert flow.failures() == [{"video": "Jump/v_Jump_g02_c01", "error": "unreadable"}]
    last = flow.read("Run/v_Run_g01_c01", 2, 3)
    assert last.shape == (1, 40, 48, 2) and last.dtype == torch.float32
    expected = compute_flow(gray[:1], gray[1:])[0].transpose(1, 2, 0)
    assert np.abs(last[0].numpy() - np.clip(expected, -BOUND, BOUND)).max() <= STEP / 2 + 1e-5
    assert np.allclose(np.median(last[0, 8:-8, 8:-8].numpy(), axis=(0, 1)), [-1, -1], atol=0.2)


def test_cli_writes_a_flow_shard(tmp_path):
    _frame_shard(tmp_path / "frames.h5", {"A/v_A_g01_c01": _moving_video(3, 3, 32, 32)}, failed=[])
    coclr("flow", "--frames", tmp_path / "frames.h5", "--out", tmp_path / "flow.h5", "--device", "cpu",
          "--batch-size", "4", "--param", "warps=3", "--param", "lambda_=0.2")
    with h5py.File(tmp_path / "flow.h5") as f:
        assert json.loads(f.attrs["parameters"])["warps"] == 3
        assert len(f["videos/A/v_A_g01_c01"].attrs["offsets"]) == 3  # 2 fields


def test_colour_wheel_image():
    ys, xs = np.mgrid[-10:11, -10:11].astype(np.float32)
    rgb = flow_to_rgb(np.stack([xs, ys]), max_magnitude=10)
    assert rgb.shape == (21, 21, 3) and rgb.dtype == np.uint8
    assert (rgb[10, 10] == 255).all()  # no motion is white
    assert rgb[10, 20, 0] > 200 and rgb[10, 20, 2] < 60  # rightwards is red


def test_flow_batches_halve_on_out_of_memory_and_give_the_same_flow(tmp_path, monkeypatch):
    videos = {"Run/v_Run_g01_c01": _moving_video(0, 5), "Run/v_Run_g02_c01": _moving_video(1, 4)}
    _frame_shard(tmp_path / "frames.h5", videos, failed=[])
    flow_shard(tmp_path / "frames.h5", tmp_path / "reference.h5", batch_size=2)
    real = extract.compute_flow

    def small_gpu(prev, nxt, **kwargs):  # a device on which only 2 pairs fit
        if len(prev) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(prev, nxt, **{**kwargs, "device": "cpu"})  # computed here, on the CPU

    monkeypatch.setattr(extract, "compute_flow", small_gpu)
    summary = flow_shard(tmp_path / "frames.h5", tmp_path / "flow.h5", batch_size="auto", device="cuda:0")
    assert summary["batch_size"] == 2 and summary["fields"] == 7
    monkeypatch.setattr(extract, "compute_flow", real)
    reference, adapted = flow_store([tmp_path / "reference.h5"]), flow_store([tmp_path / "flow.h5"])
    for video_id in videos:
        assert torch.equal(reference.read(video_id), adapted.read(video_id))


@pytest.mark.parametrize("method", ["tvl1_numba", "tvl1_opencv"])
def test_pairs_in_parallel_give_the_same_flow(method):
    """Real footage: N pairs at once, one thread each, is the one-by-one output bit for bit."""
    frames = gray_frames("carphone", 5, size=(64, 48))
    one_by_one = compute_flow(frames[:-1], frames[1:], method=method)
    parallel = compute_flow(frames[:-1], frames[1:], method=method, threads=2)
    assert np.array_equal(one_by_one, parallel) and np.abs(parallel).max() > 0.1
    before = cv2.getNumThreads()
    compute_flow(frames[:2], frames[1:3], method=method, threads=2)
    assert cv2.getNumThreads() == before


def test_opencv_runs_with_the_parameters_of_each_call():
    """OpenCV's algorithm objects are kept per thread: a call with other parameters gets its own."""
    frames = gray_frames("bikes", 3, size=(48, 40))
    default = compute_flow(frames[:-1], frames[1:], method="tvl1_opencv")
    one_warp = compute_flow(frames[:-1], frames[1:], method="tvl1_opencv", warps=1, scales=1)
    assert not np.array_equal(default, one_warp)
    assert np.array_equal(default, compute_flow(frames[:-1], frames[1:], method="tvl1_opencv"))


def test_auto_method_is_numba_on_the_cpu_and_pytorch_on_cuda():
    assert resolve_method("auto", "cpu") == "tvl1_numba" and resolve_method("auto", "cuda:0") == "tvl1"
    assert resolve_method("tvl1", "cpu") == "tvl1"
    frames = gray_frames("bikes", 3, size=(40, 40))
    assert np.array_equal(compute_flow(frames[:-1], frames[1:], method="auto"),
                          compute_flow(frames[:-1], frames[1:], method="tvl1_numba"))


def test_auto_compile_needs_a_cxx_compiler_on_the_cpu(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(extract.shutil, "which", lambda name: None)
    assert extract.resolve_compile("auto", "tvl1", "cpu") == (False, "auto, no C++ compiler (c++, g++, clang++) on PATH")
    monkeypatch.setattr(extract.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert extract.resolve_compile("auto", "tvl1", "cpu")[0] is True
    assert extract.resolve_compile("true", "tvl1_opencv", "cpu")[0] is False  # OpenCV is not torch code
    assert extract.resolve_compile("false", "tvl1", "cuda")[0] is False


def test_cli_auto_logs_the_path_it_runs(tmp_path):
    _frame_shard(tmp_path / "frames.h5", {"Run/v_Run_g01_c01": _moving_video(0, 4)}, failed=[])
    result = coclr("flow", "--frames", tmp_path / "frames.h5", "--out", tmp_path / "flow.h5", "--method", "auto",
                   "--batch-size", "auto", "--compile", "auto", "--threads", 1)
    assert "flow: tvl1_numba on cpu, eager (tvl1_numba is not compiled)" in result.stderr
    with h5py.File(tmp_path / "flow.h5") as f:
        assert f.attrs["method"] == "tvl1_numba"
    assert flow_store([tmp_path / "flow.h5"]).num_frames("Run/v_Run_g01_c01") == 3


def test_flow_methods_are_the_schemas():
    """The settings' schema is the source of truth for flow.method: the code's list must be its enum."""
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["flow"]["properties"]["method"]["enum"] == list(METHODS)


def test_the_flow_benchmark_measures_the_pipelines_own_path():
    """benchmarks/flow.py reads the flow jobs' settings (schema defaults filled) and names the path
    they run: on a CPU, `flow.method: auto` is tvl1_numba, a pair per thread."""
    from benchmarks.flow import paths

    named = paths(cores=2)
    default = next(name for name in named if name.startswith("pipeline default"))
    keywords, _, threads = named[default]
    assert keywords["method"] == "tvl1_numba" and not keywords["compile"] and threads == 1
    assert keywords["threads"] == 1
    assert {kw["method"] for kw, _, _ in named.values()} == {"tvl1_opencv", "tvl1", "tvl1_numba"}
