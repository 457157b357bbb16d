"""A batch on its way from the loader to the network.

The loader's workers crop and hand on RGB as uint8, or with ``resources.jpeg_decode:
device`` as JPEG bytes (:class:`EncodedClip`), which :func:`collate` keeps as lists;
:func:`to_device` moves the batch to the training device, decodes those bytes there,
and turns the RGB into network input (:func:`coclr.augment.rgb_input`). Training and
evaluation steps both start with it.
"""

import torch
from torch.utils.data._utils.collate import collate as collate_with, default_collate_fn_map

from coclr.augment import colour_flow, decode_clips, rgb_input
from coclr.shards import EncodedClip


def collate(batch):
    """The DataLoader's default collation, with :class:`EncodedClip` values kept as lists."""
    return collate_with(batch, collate_fn_map={**default_collate_fn_map, EncodedClip: lambda b, **_: list(b)})


def to_device(batch, device, colour=None):
    """Move a (nested) batch to ``device``; the uint8 RGB clips in it (or JPEG clips, decoded
    there) become network input there. With ``colour``, a clip's RGB is coloured, and its flow
    too when ``colour.on_flow``, by one draw per clip, only where its ``coloured`` flag is set."""
    if isinstance(batch, dict) and ("rgb" in batch or "flow" in batch):
        return _clips_to_device(batch, device, colour)
    if isinstance(batch, dict):
        return {k: to_device(v, device, colour) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if torch.is_tensor(batch) else batch


def _clips_to_device(clips, device, colour):
    out = {k: to_device(v, device) for k, v in clips.items() if k != "rgb"}
    rgb = _rgb_on(clips["rgb"], device) if "rgb" in clips else None
    if colour is None or (rgb is None and not colour.on_flow):
        drawn = None
    else:
        sample = rgb if rgb is not None else out["flow"].transpose(1, 2)
        drawn = colour.draw(len(sample), sample.shape[1], device, out.get("coloured"))
    if rgb is not None:
        out["rgb"] = rgb_input(rgb, None if drawn is None else lambda video: colour.apply(video, drawn))
    if drawn is not None and "flow" in out and colour.on_flow:
        out["flow"] = colour_flow(out["flow"], colour, drawn)
    return out


def _rgb_on(clips, device):
    if isinstance(clips, list):
        return decode_clips(clips, device)
    return clips.to(device, non_blocking=True)
