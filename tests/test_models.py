"""S3D and the encoder: reference structure, reduced variants, checkpoint helpers."""

from pathlib import Path

import pytest
import torch

from coclr.models import Encoder, S3D, build_backbone, load_backbone, load_encoder, load_model, place, save_model

LAYOUT = Path(__file__).parent / "fixtures" / "reference_checkpoint_layout.txt"


def reference_backbone_shapes():
    rows = [line.rstrip("\n").split("\t") for line in LAYOUT.open() if not line.startswith("#")]
    prefix = "encoder_q.0."
    return {k[len(prefix):]: tuple(eval(shape)) for k, shape, _ in rows if k.startswith(prefix)}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_reference_width_parameters_and_output():
    torch.manual_seed(0)
    model = build_backbone({}).eval()
    assert n_params(model) == 7_910_048
    assert model.out_dim == 1024
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 128, 128)).shape == (1, 1024, 4, 4, 4)


def test_module_names_and_shapes_equal_reference_layout():
    state = {k: tuple(v.shape) for k, v in S3D().state_dict().items()}
    assert state == reference_backbone_shapes()


def test_flow_input_channels():
    assert S3D(in_channels=2).Conv_1a.conv1.weight.shape[1] == 2


@pytest.mark.parametrize("width, depth, out_dim", [(0.25, 5, 256), (0.5, 4, 416), (0.25, 3, 120), (0.125, 5, 128)])
def test_reduced_variant_runs_on_small_clips(width, depth, out_dim):
    torch.manual_seed(0)
    model = build_backbone({"width": width, "depth": depth, "in_channels": 3})
    assert model.out_dim == out_dim
    assert all(c.out_channels % 8 == 0 for c in model.modules() if isinstance(c, torch.nn.Conv3d))
    out = model(torch.randn(2, 3, 8, 32, 32))
    assert out.shape[:2] == (2, out_dim)
    out.mean().backward()


def test_bad_depth_rejected():
    with pytest.raises(ValueError):
        build_backbone({"depth": 2})


def test_channels_last_3d_gives_same_output():
    torch.manual_seed(0)
    model = build_backbone({"width": 0.25}).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        out = model(x.to(memory_format=torch.channels_last_3d))
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_placed_networks_are_channels_last_and_save_contiguous(tmp_path):
    arch = {"in_channels": 3, "width": 0.25, "depth": 3}
    encoder = place(Encoder(build_backbone(arch)), torch.device("cpu"))
    conv = encoder.state_dict()["0.Conv_1a.conv1.weight"]
    assert conv.is_contiguous(memory_format=torch.channels_last_3d) and not conv.is_contiguous()
    save_model(tmp_path / "m.pt", encoder.state_dict(), "rgb", arch)
    assert all(t.is_contiguous() for t in load_model(tmp_path / "m.pt")["state_dict"].values())


def test_encoder_indices_embedding_and_features():
    torch.manual_seed(0)
    encoder = Encoder(build_backbone({"width": 0.25}), dim=128)
    assert {k.split(".")[0] for k in encoder.state_dict()} == {"0", "2", "4"}
    assert encoder.state_dict()["2.weight"].shape == (256, 256, 1, 1, 1)
    assert encoder.state_dict()["4.bias"].shape == (128,)
    x = torch.randn(3, 3, 8, 32, 32)
    z = encoder(x)
    assert z.shape == (3, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    assert encoder.features(x).shape == (3, 256)


def test_save_and_load_model(tmp_path):
    torch.manual_seed(0)
    arch = {"in_channels": 2, "width": 0.25, "depth": 4}
    encoder = Encoder(build_backbone(arch))
    save_model(tmp_path / "m.pt", encoder.state_dict(), "flow", arch, {"epoch": 3})
    checkpoint = load_model(tmp_path / "m.pt")
    assert (checkpoint["format"], checkpoint["view"], checkpoint["arch"]) == ("coclr-model/1", "flow", arch)
    x = torch.randn(2, 2, 8, 32, 32)
    encoder.eval()
    torch.testing.assert_close(load_encoder(checkpoint).eval()(x), encoder(x))
    torch.testing.assert_close(load_backbone(checkpoint).eval()(x), encoder[0](x))
    with pytest.raises(ValueError):
        save_model(tmp_path / "x.pt", encoder.state_dict(), "depth", arch)
