"""The flow codec: clip to +-BOUND pixels, quantise to uint8, one lossless PNG per flow field.

CoCLR stores flow as uint8, ``round((f + 20) * 255 / 40)``, so a step is
40/255 (about 0.157) pixels. Each field is encoded as one grayscale PNG with
the x component on the left half and the y component on the right half: in
the measurements of docs/flow.md this is lossless and smaller than raw uint8
with gzip, while JPEG, smaller still, moves values by up to 13 steps at edges.
:func:`encode_flow` and :func:`decode_flow` are what flow shards store and give
back (:mod:`coclr.shards` holds the fields like frames).
"""

import cv2
import numpy as np

BOUND = 20.0
ENCODING = "png-uint8-xy-side-by-side"
PNG_COMPRESSION = 9


def quantise(flow, bound=BOUND):
    """Flow in pixels (any shape, float) -> uint8 codes, clipped to [-bound, bound]."""
    flow = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    return np.rint((flow + bound) * (255.0 / (2 * bound))).astype(np.uint8)


def dequantise(codes, bound=BOUND):
    """uint8 codes -> float32 flow in pixels (the centre of each quantisation step)."""
    return np.asarray(codes, dtype=np.float32) * np.float32(2 * bound / 255.0) - np.float32(bound)


def encode_field(codes):
    """uint8 codes (H, W, 2) of one flow field -> PNG bytes (uint8 array)."""
    side_by_side = np.ascontiguousarray(np.concatenate([codes[..., 0], codes[..., 1]], axis=1))
    ok, buf = cv2.imencode(".png", side_by_side, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("PNG encoding of a flow field failed")
    return buf.reshape(-1)


def decode_field(buf):
    """PNG bytes -> uint8 codes (H, W, 2)."""
    side_by_side = cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if side_by_side is None:
        raise ValueError("not a PNG-encoded flow field")
    width = side_by_side.shape[1] // 2
    return np.stack([side_by_side[:, :width], side_by_side[:, width:]], axis=-1)


def encode_flow(flow) -> list:
    """Flow fields (T, H, W, 2) in pixels -> one PNG byte array per field, as a flow shard stores them."""
    return [encode_field(codes) for codes in quantise(flow)]


def decode_flow(stored) -> np.ndarray:
    """A flow shard's stored fields (PNG byte arrays) -> float32 (T, H, W, 2) in pixels."""
    return dequantise(np.stack([decode_field(buf) for buf in stored]))
