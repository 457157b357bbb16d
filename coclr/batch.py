"""A batch on its way from the loader to the network.

The loader's workers crop and hand on RGB as uint8, or with ``resources.jpeg_decode:
device`` as JPEG bytes (:class:`EncodedClip`), which :func:`collate` keeps as lists;
:func:`to_device` moves the batch to the training device, decodes those bytes there,
and turns the RGB into network input (:func:`coclr.augment.rgb_input`). Training and
evaluation steps both start with it.
"""

import torch
from torch.utils.data._utils.collate import collate as collate_with, default_collate_fn_map

from coclr.augment import decode_clips, rgb_input
from coclr.shards import EncodedClip


def collate(batch):
    """The DataLoader's default collation, with :class:`EncodedClip` values kept as lists."""
    return collate_with(batch, collate_fn_map={**default_collate_fn_map, EncodedClip: lambda b, **_: list(b)})


def to_device(batch, device, colour=None):
    """Move a (nested) batch to ``device``; its uint8 RGB clips (or JPEG clips, decoded there)
    become network input there (coloured by ``colour``)."""
    if isinstance(batch, dict):
        return {k: rgb_input(_rgb_on(v, device), colour) if k == "rgb" else to_device(v, device, colour)
                for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if torch.is_tensor(batch) else batch


def _rgb_on(clips, device):
    if isinstance(clips, list):
        return decode_clips(clips, device)
    return clips.to(device, non_blocking=True)
