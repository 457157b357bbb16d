"""The synthetic dataset: UCF101's layout and formats, determinism, and a class carried by motion only."""

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coclr import synthetic
from coclr.cli import main
from coclr.video import decode

SMALL = dict(classes=3, train_groups=2, test_groups=1, clips_per_group=2, frames=8, size=32, seed=3)
NAME = re.compile(r"^(\w+)/v_\1_g(\d\d)_c(\d\d)\.avi$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ucf")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    main(["synthesize", "--out", str(out), "--workers", "2", *args])
    return out


def read_lines(path: Path) -> list[str]:
    raw = path.read_bytes().decode()
    assert raw.endswith("\r\n") and "\n" not in raw.replace("\r\n", "")  # UCF101 uses CRLF
    return raw.split("\r\n")[:-1]


def test_layout_and_split_files_as_ucf101(dataset):
    classes = dict(line.split(" ") for line in read_lines(dataset / "classInd.txt"))
    assert list(classes) == ["1", "2", "3"] and list(classes.values()) == synthetic.class_names(3)
    train = [line.split(" ") for line in read_lines(dataset / "trainlist01.txt")]
    test = read_lines(dataset / "testlist01.txt")
    assert all(len(t) == 2 for t in train) and all(" " not in t for t in test)
    assert len(train) == 3 * 2 * 2 and len(test) == 3 * 1 * 2
    for path, label in train:
        cls = NAME.match(path).group(1)
        assert classes[label] == cls
    for path in [p for p, _ in train] + test:
        assert NAME.match(path) and (dataset / path).is_file()
    assert sorted(p.name for p in dataset.iterdir() if p.is_file()) == ["classInd.txt", "testlist01.txt", "trainlist01.txt"]
    frames = decode(dataset / test[0])
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8


def test_train_and_test_groups_are_disjoint(dataset):
    def groups(lines):
        return {(NAME.match(line.split(" ")[0]).group(1), NAME.match(line.split(" ")[0]).group(2)) for line in lines}

    train = groups(read_lines(dataset / "trainlist01.txt"))
    test = groups(read_lines(dataset / "testlist01.txt"))
    assert train and test and not train & test
    assert {g for _, g in test} == {"01"}  # test groups come first, as in UCF101 split 1


def test_video_decodes_close_to_the_rendered_frames(dataset):
    cfg = synthetic.design(**SMALL)
    spec = synthetic.video_specs(cfg)[0]
    rendered, _ = synthetic.render(cfg, spec)
    decoded = decode(dataset / spec.path)
    assert np.abs(decoded.astype(int) - rendered).mean() < 4


def test_deterministic_by_seed(tmp_path):
    cfg = synthetic.design(**SMALL)
    spec = synthetic.video_specs(cfg)[5]
    a, pose_a = synthetic.render(cfg, spec)
    b, pose_b = synthetic.render(cfg, spec)
    assert np.array_equal(a, b) and np.array_equal(pose_a, pose_b)
    other, _ = synthetic.render(synthetic.design(**{**SMALL, "seed": 4}), spec)
    assert not np.array_equal(a, other)
    small = synthetic.design(**{**SMALL, "classes": 1, "train_groups": 1, "clips_per_group": 1})
    for workers, out in ((1, tmp_path / "a"), (2, tmp_path / "b")):
        synthetic.generate(small, out, workers)
    for path in ("RiseUp/v_RiseUp_g01_c01.avi", "RiseUp/v_RiseUp_g02_c01.avi", "trainlist01.txt"):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()


def many_videos():
    cfg = synthetic.design(classes=10, train_groups=6, test_groups=0, clips_per_group=3, frames=12, size=32)
    return [(spec, *synthetic.render(cfg, spec)) for spec in synthetic.video_specs(cfg)]


@pytest.fixture(scope="module")
def videos():
    return many_videos()


def group_cv_accuracy(x, videos) -> float:
    y = np.array([spec.label for spec, _, _ in videos])
    groups = np.array([spec.label * 100 + spec.group for spec, _, _ in videos])  # a UCF101 group is per class
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(clf, x, y, groups=groups, cv=GroupKFold(3)).mean()


def test_appearance_does_not_predict_the_class(videos):
    """Colour statistics of whole videos classify no better than chance (0.1) on unseen groups."""
    x = np.array([np.r_[f.mean((0, 1, 2)), f.std((0, 1, 2)), f[0].mean((0, 1))] for _, f, _ in videos])
    assert group_cv_accuracy(x, videos) < 0.22


def test_motion_carries_the_class(videos):
    """Simple statistics of the actors' ground-truth motion classify almost perfectly."""

    def stats(pose):
        v = np.diff(pose[:, 0], axis=0)  # first actor: (T-1, 4) per-frame change of x, y, angle, log-scale
        acc = np.diff(v, axis=0)
        return np.r_[v.mean(0), np.abs(v).mean(0), np.abs(acc).mean(0), np.abs(v[:, :2]).max(0)]

    x = np.array([stats(pose) for _, _, pose in videos])
    assert group_cv_accuracy(x, videos) > 0.95
