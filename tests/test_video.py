"""Decoding, writing and probing real (tiny) videos through the bundled ffmpeg."""

import numpy as np
import pytest

from coclr.video import VideoError, _probe_ffmpeg, decode, probe, resized_shape, write_avi


def smooth_frames(t=16, h=40, w=64):
    """Gradients plus a moving disk: content like the synthetic set, which MJPEG keeps well."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 0] = x * 255 // w
        frames[i, ..., 1] = y * 255 // h
        frames[i, ..., 2] = 128
        frames[i][(x - 10 - 2 * i) ** 2 + (y - 20) ** 2 < 8**2] = (240, 40, 40)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    frames = smooth_frames()
    write_avi(path, frames, fps=20)
    return path, frames


def test_round_trip_is_close_to_the_input(clip):
    path, frames = clip
    decoded = decode(path)
    assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
    error = np.abs(decoded.astype(int) - frames)
    assert error.mean() < 3 and np.percentile(error, 99) < 20


def test_probe_reads_the_header(clip):
    path, _ = clip
    expected = dict(num_frames=16, fps=20.0, width=64, height=40)
    assert probe(path) == expected
    assert _probe_ffmpeg(path) == expected  # the fallback agrees with OpenCV


def test_resize_to_short_side_keeps_aspect_and_even_sizes(clip):
    path, _ = clip
    assert decode(path, short_side=20).shape == (16, 20, 32, 3)
    assert resized_shape(320, 240, 128) == (170, 128)  # 170.7 rounds to the nearest even width
    assert resized_shape(240, 320, 128) == (128, 170)
    with pytest.raises(ValueError, match="even"):
        resized_shape(320, 240, 127)


def test_fps_resampling(clip):
    path, _ = clip
    assert len(decode(path, fps=10)) == 8
    assert decode(path, fps=10, short_side=20).shape == (8, 20, 32, 3)


def test_truncated_video_raises_naming_the_path(tmp_path, clip):
    data = clip[0].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.avi") as caught:
        decode(cut)
    assert caught.value.path == str(cut) and caught.value.reason


def test_not_a_video_raises(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="junk.avi"):
        probe(junk)
    with pytest.raises(VideoError, match="missing.avi"):
        decode(tmp_path / "missing.avi")


def test_write_avi_checks_input_and_leaves_no_temp_files(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_avi(tmp_path / "x.avi", np.zeros((2, 8, 8, 3), np.float32), fps=25)
    write_avi(tmp_path / "y.avi", smooth_frames(t=2), fps=25)
    assert [p.name for p in tmp_path.iterdir()] == ["y.avi"]
    assert (tmp_path / "y.avi").read_bytes()[:4] == b"RIFF"  # a real AVI container
