"""Importing checkpoints in the authors' layout, built here from the fixture key/shape list."""

import re
from pathlib import Path

import pytest
import torch

from coclr.cli import main
from coclr.models import load_backbone, load_model
from coclr.moco import MoCo
from coclr.importer import ALIASES, convert

LAYOUT = Path(__file__).parent / "fixtures" / "reference_checkpoint_layout.txt"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


@pytest.fixture(scope="module")
def encoder_q():
    """encoder_q.* and queue entries of the layout with random values, as a released InfoNCE RGB file has."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for line in LAYOUT.open():
        if line.startswith("#"):
            continue
        key, shape, dtype = line.rstrip("\n").split("\t")
        shape = eval(shape)
        if DTYPES[dtype] == torch.int64:
            state[key] = torch.randint(0, 10, shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def with_aliases(state):
    """Add the blockN.M second names, sharing storage with the named tensors as in the released files."""
    names = {v: k for k, v in ALIASES.items()}
    out = dict(state)
    for key, value in state.items():
        m = re.search(r"\.(Conv_\w\w|Mixed_\w\w)\.", key)
        if m:
            out[key.replace(m.group(0), f".{names[m.group(1)]}.", 1)] = value
    return out


def reference_file(path, state):
    adam = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-5,
                              "amsgrad": False, "params": [0]}]}
    torch.save({"epoch": 299, "state_dict": state, "best_acc": 0.5, "optimizer": adam, "iteration": 1234}, path)


def moco_state(encoder_q):
    state = dict(encoder_q)
    state.update({"encoder_k" + k[len("encoder_q"):]: v + 1 for k, v in encoder_q.items() if k.startswith("encoder_q.")})
    return with_aliases(state)


def test_infonce_rgb_import_loads_with_nothing_unmapped(tmp_path, encoder_q, capsys):
    state = moco_state(encoder_q)
    assert any(".block4.3." in k for k in state)
    reference_file(tmp_path / "infonce-rgb.pth.tar", state)
    main(["import-weights", str(tmp_path / "infonce-rgb.pth.tar"), str(tmp_path / "out.pt")])
    report = capsys.readouterr().out
    assert "UNKNOWN" not in report and "SHAPE" not in report and "CONFLICT" not in report
    checkpoint = load_model(tmp_path / "out.pt")
    assert checkpoint["view"] == "rgb"
    assert checkpoint["arch"] == {"in_channels": 3, "width": 1.0, "depth": 5}
    assert checkpoint["meta"]["unmapped"] == [] and checkpoint["meta"]["epoch"] == 299
    model = MoCo(checkpoint["arch"], queue_size=2048)
    model.load_state_dict(checkpoint["state_dict"])  # strict: every model entry present
    for key in ("encoder_q.0.Mixed_4e.branch2.1.bn1.running_var", "encoder_k.4.weight", "queue", "queue_ptr"):
        assert torch.equal(model.state_dict()[key], state[key])
    assert model.queue_full and bool((model.queue_label == -1).all())


def test_coclr_flow_import_with_prefix_sampler_and_metadata(encoder_q):
    state = moco_state(encoder_q)
    state.update(queue_second=torch.randn(128, 2048), queue_vname=torch.arange(2048), queue_label=torch.arange(2048) % 7)
    state.update({"sampler." + k[len("encoder_q."):]: v for k, v in encoder_q.items() if k.startswith("encoder_q.")})
    state = {"module." + k: v for k, v in state.items()}
    checkpoint, report = convert({"state_dict": state}, name="CoCLR-ucf101-flow-128-s3d.pth.tar")
    assert checkpoint["view"] == "flow" and checkpoint["meta"]["unmapped"] == []
    assert "skipped  sampler." in report and "queue_vname* -> queue_group*" in report
    assert "queue_second* -> queue_other_view*" in report
    sd = checkpoint["state_dict"]
    assert torch.equal(sd["queue_other_view"], state["module.queue_second"])
    assert torch.equal(sd["queue_group"], torch.arange(2048)) and torch.equal(sd["queue_label"], torch.arange(2048) % 7)
    MoCo(checkpoint["arch"]).load_state_dict(sd)


def test_classifier_import_gives_backbone(encoder_q):
    state = {"backbone." + k[len("encoder_q.0."):]: v for k, v in encoder_q.items() if k.startswith("encoder_q.0.")}
    state.update({"final_bn.weight": torch.ones(1024), "final_fc.0.weight": torch.zeros(101, 1024)})
    checkpoint, report = convert({"state_dict": with_aliases(state)}, view="rgb")
    assert set(checkpoint["meta"]["absent"]) == {"2.weight", "2.bias", "4.weight", "4.bias"}
    assert "skipped  final_fc.* (1 entries)" in report and checkpoint["meta"]["unmapped"] == []
    backbone = load_backbone(checkpoint)
    assert torch.equal(backbone.Mixed_5c.branch0[0].conv.weight, state["backbone.Mixed_5c.branch0.0.conv.weight"])


def test_problems_are_reported(encoder_q):
    state = dict(encoder_q)
    state["encoder_q.4.weight"] = torch.zeros(128, 512, 1, 1, 1)
    state["encoder_q.9.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="SHAPE    encoder_q.4.weight.*\n.*UNKNOWN  encoder_q.9.weight"):
        convert({"state_dict": state}, view="rgb")
    with pytest.raises(ValueError, match="--view"):
        convert({"state_dict": encoder_q}, name="checkpoint.pth.tar")


def test_pickled_objects_are_refused_without_trust(tmp_path, encoder_q):
    import numpy as np  # a numpy scalar is the likeliest non-tensor object in an old checkpoint

    reference_file(tmp_path / "rgb.pth.tar", moco_state(encoder_q))
    source = torch.load(tmp_path / "rgb.pth.tar", weights_only=True)
    source["best_acc"] = np.float64(0.5)
    torch.save(source, tmp_path / "rgb.pth.tar")
    with pytest.raises(SystemExit, match="--trust-pickle"):
        main(["import-weights", str(tmp_path / "rgb.pth.tar"), str(tmp_path / "out.pt")])
    main(["import-weights", str(tmp_path / "rgb.pth.tar"), str(tmp_path / "out.pt"), "--trust-pickle"])
    assert type(load_model(tmp_path / "out.pt")["meta"]["best_acc"]) is float  # stored as a plain number


def test_gated_s3dg_checkpoints_are_refused(encoder_q):
    state = dict(encoder_q)
    state["encoder_q.0.Mixed_3b.branch1_gating.fc.weight"] = torch.zeros(128, 128)
    with pytest.raises(ValueError, match="gated S3D-G checkpoint .*branch1_gating.fc.weight"):
        convert({"state_dict": state}, view="rgb")


def test_unmapped_entries_inside_the_network_are_refused(encoder_q):
    state = dict(encoder_q)
    state["encoder_k.0.Mixed_5c.extra.weight"] = torch.zeros(4)
    with pytest.raises(ValueError, match="UNKNOWN entries inside the network .*encoder_k.0.Mixed_5c.extra.weight"):
        convert({"state_dict": state}, view="rgb")
    backbone = {"backbone." + k[len("encoder_q.0."):]: v for k, v in encoder_q.items() if k.startswith("encoder_q.0.")}
    with pytest.raises(ValueError, match="inside the network"):
        convert({"state_dict": {**backbone, "backbone.Mixed_5c.branch0.gate.weight": torch.zeros(2)}}, view="rgb")
    state = {**dict(encoder_q), "queue_extra": torch.zeros(3)}  # outside the network: reported, kept in meta
    checkpoint, report = convert({"state_dict": state}, view="rgb")
    assert "UNKNOWN  queue_extra (3,)" in report and checkpoint["meta"]["unmapped"] == ["queue_extra"]


def test_the_readme_import_example_works_as_written(tmp_path, encoder_q, monkeypatch):
    """The released file names carry the view (`-f-` is flow): the README's command needs no --view."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    command = re.search(r"`python -m coclr (import-weights [^`]+)`", readme).group(1).split()
    monkeypatch.chdir(tmp_path)
    reference_file(tmp_path / command[1], moco_state(encoder_q))
    main(command)
    assert load_model(tmp_path / command[2])["view"] == "rgb"
    _, report = convert({"state_dict": encoder_q}, name="InfoNCE-ucf101-f-128-s3d-ep396.pth.tar")
    assert ", flow, arch" in report
