"""The paper preset's training augmentation measured against the authors' code.

The expected rates are derived from the reference (TengdaHan/CoCLR, ``main_nce.py`` /
``main_coclr.py`` ``get_transform`` and ``utils/augmentation.py``):

- ``TransformController`` picks ``TwoClipTransform`` or ``OneClipTransform`` with weights 0.5 / 0.5.
- Two-clip: two windows; each view gets the "base" transform (crop, colour, flip) with p 0.3,
  else the "null" one (crop, flip). One-clip: one window, augmented twice; one view base, the
  other null, 50/50.
- So P(a view is coloured) = 0.5 x 0.3 + 0.5 x 0.5 = 0.40; P(both views) = 0.5 x 0.3^2 = 0.045;
  P(neither) = 0.5 x 0.7^2 = 0.245; P(one window) = 0.5.
- Inside base: jitter p 0.8, grey p 0.2, blur p 0.5, so per view 0.32, 0.08 and 0.20.
- ``RandomSizedCrop(consistent=False)`` returns after its first try: area U(0.2, 1) of the
  frame, aspect U(3/4, 4/3), w and h swapped with p 0.5; a box that does not fit leaves the
  frame whole (squashed by the resize). The share of whole frames on 171x128 is integrated
  numerically below (0.30).
"""

import random

import numpy as np
import pandas as pd
import pytest
import torch

from coclr.augment import RandomColour, sample_crop
from coclr.clips import TwoClipDataset
from coclr.config import complete_settings

H, W, FRAMES = 128, 171, 40
PAIRS = 4000


class RecordingReader:
    """Frames of one size for any video, remembering the windows read."""

    def __init__(self):
        self.reads = []

    def length(self, video_id):
        return FRAMES

    def read(self, video_id, indices):
        self.reads.append(tuple(indices))
        return {"rgb": torch.zeros(len(indices), H, W, 3, dtype=torch.uint8)}


def whole_frame_share(height=H, width=W, steps=400):
    """P(the reference's single try does not fit), by midpoint integration over area and aspect."""
    area = 0.2 + 0.8 * (np.arange(steps) + 0.5) / steps
    aspect = 0.75 + (4 / 3 - 0.75) * (np.arange(steps) + 0.5) / steps
    a, r = np.meshgrid(area * height * width, aspect)
    w, h = np.sqrt(a * r), np.sqrt(a / r)
    misses = [(w > width) | (h > height), (h > width) | (w > height)]  # as drawn, swapped
    return float(np.mean([m.mean() for m in misses]))


def within(value, expected, n):
    """Four standard errors of a proportion measured on ``n`` draws."""
    return abs(value - expected) <= 4 * np.sqrt(expected * (1 - expected) / n)


@pytest.fixture(scope="module")
def pairs():
    clip = complete_settings({"clip": {"frames": 2, "size": 16}})["clip"]  # the schema's defaults: the reference
    videos = pd.DataFrame({"video_id": ["v"], "label": [0], "group": ["g"]})
    reader = RecordingReader()
    dataset = TwoClipDataset(videos, reader, clip)
    random.seed(0)
    items = [dataset[0] for _ in range(PAIRS)]
    return items, reader, clip


def test_the_defaults_are_the_reference_recipe():
    clip = complete_settings({})["clip"]
    assert (clip["colour_views"], clip["one_window"], clip["flow_colour"], clip["grey"], clip["crop"],
            clip["interpolation"]) == ("reference", 0.5, True, "channel", "reference", "bicubic")


def test_which_views_are_coloured_and_how_often_pairs_share_a_window(pairs):
    items, reader, _ = pairs
    query = np.array([item["query"]["coloured"] for item in items])
    key = np.array([item["key"]["coloured"] for item in items])
    views = np.concatenate([query, key])
    assert within(views.mean(), 0.40, len(views))
    assert within((query & key).mean(), 0.045, PAIRS)
    assert within((~query & ~key).mean(), 0.245, PAIRS)
    # one window = one read for the pair; two windows = two reads
    assert len(reader.reads) < 2 * PAIRS
    one_window = 1 - (len(reader.reads) - PAIRS) / PAIRS
    assert within(one_window, 0.5, PAIRS)
    # a one-window pair colours exactly one view, so both-coloured pairs come from two windows only
    assert within((query ^ key).mean(), 0.5 + 0.5 * 2 * 0.3 * 0.7, PAIRS)


def test_per_view_rates_of_jitter_grey_and_blur(pairs):
    items, _, clip = pairs
    coloured = torch.tensor([item[view]["coloured"] for item in items for view in ("query", "key")])
    torch.manual_seed(0)
    drawn = RandomColour.from_settings(clip).draw(len(coloured), 2, "cpu", coloured)
    n = len(coloured)
    assert within(drawn.jittered.float().mean().item(), 0.32, n)
    assert within(drawn.grey.float().mean().item(), 0.08, n)
    assert within((drawn.sigma > 0.01).float().mean().item(), 0.20, n)
    assert not (drawn.jittered | drawn.grey | (drawn.sigma > 0.01))[~coloured].any()  # null views: identity


def test_the_reference_crop_leaves_the_frame_whole_when_its_one_try_does_not_fit():
    expected = whole_frame_share()
    assert 0.28 < expected < 0.32
    rng = random.Random(0)
    boxes = [sample_crop(H, W, kind="reference", rng=rng) for _ in range(PAIRS)]
    whole = np.mean([box == (0, 0, H, W) for box in boxes])
    assert within(whole, expected, PAIRS)
    assert all(0 <= top and 0 <= left and top + h <= H and left + w <= W for top, left, h, w in boxes)
    inception = [sample_crop(H, W, kind="inception", rng=rng) for _ in range(PAIRS)]
    assert not any(box == (0, 0, H, W) for box in inception)  # ten tries, then the central square
