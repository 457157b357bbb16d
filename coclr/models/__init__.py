"""Models and the project's model-checkpoint format, defined here and nowhere else.

A model checkpoint is a plain dict that loads with ``torch.load(..., weights_only=True)``:

* ``format``: ``"coclr-model/1"``
* ``view``: ``"rgb"`` or ``"flow"``
* ``arch``: the :func:`build_backbone` kwargs (``in_channels``, ``width``, ``depth``)
* ``state_dict``: a :class:`coclr.moco.MoCo` state dict (``encoder_q.*``, ``encoder_k.*``,
  ``queue*``) or an :class:`Encoder` state dict (``0.*`` backbone, ``2.*``/``4.*`` head;
  the head is absent when only a backbone was available, e.g. an imported classifier)
* ``meta``: plain values (epoch, loss, source file, ...)

Flow inputs: ``in_channels`` 2 means (x, y); 3 means the reference's (128 constant, y, x).
"""

import torch

from coclr.io import atomic_path
from coclr.models.encoder import Encoder
from coclr.models.s3d import S3D, build_backbone
from coclr.naming import VIEWS

FORMAT = "coclr-model/1"

__all__ = ["FORMAT", "VIEWS", "Encoder", "S3D", "build_backbone", "view_arch", "place", "save_model", "load_model",
           "encoder_state", "load_encoder", "load_backbone"]


def view_arch(view, model_settings: dict) -> dict:
    """:func:`build_backbone` kwargs for one view from the config's ``model`` section."""
    channels = 3 if view == "rgb" else model_settings["flow_channels"]
    return {"in_channels": channels, "width": model_settings["width"], "depth": model_settings["depth"]}


def place(module, device):
    """Move a network to ``device`` in the channels-last-3d layout its 3-D convolutions and
    poolings run fastest in (on CPU: training steps 1.45-1.75x, inference 2.3x; docs/model.md)."""
    return module.to(device=device, memory_format=torch.channels_last_3d)


def save_model(path, state_dict, view, arch, meta=None) -> None:
    """Write a model checkpoint atomically; tensors are moved to the CPU."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    checkpoint = {
        "format": FORMAT,
        "view": view,
        "arch": dict(arch),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
        "meta": dict(meta or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_model(path) -> dict:
    """Read and check a model checkpoint (weights_only: no code runs while loading)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (convert it with `python -m coclr import-weights`)")
    return checkpoint


def encoder_state(state_dict) -> dict:
    """The query encoder's entries of a MoCo state dict; an Encoder state dict passes through."""
    prefix = "encoder_q."
    if any(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return dict(state_dict)


def load_encoder(checkpoint) -> Encoder:
    """Query encoder (backbone + head) of a checkpoint; the head width comes from its weights."""
    state = encoder_state(checkpoint["state_dict"])
    if "4.weight" not in state:
        raise ValueError("checkpoint holds no projection head: use load_backbone")
    encoder = Encoder(build_backbone(checkpoint["arch"]), dim=state["4.weight"].shape[0])
    encoder.load_state_dict(state)
    return encoder


def load_backbone(checkpoint) -> S3D:
    """Backbone of a checkpoint, for feature extraction, linear probe and fine-tuning."""
    backbone = build_backbone(checkpoint["arch"])
    state = encoder_state(checkpoint["state_dict"])
    backbone.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("0.")})
    return backbone
