"""The three contrastive losses against values worked out by hand."""

import math

import pytest
import torch

from coclr.losses import info_nce, label_positives, mil_nce, uber_nce

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
MASK = torch.tensor([[True, True, False], [True, False, True]])


def log_softmax(row):
    total = sum(math.exp(v) for v in row)
    return [v - math.log(total) for v in row]


ROWS = [log_softmax(r) for r in LOGITS.tolist()]


def test_info_nce():
    expected = -(ROWS[0][0] + ROWS[1][0]) / 2
    assert info_nce(LOGITS).item() == pytest.approx(expected, rel=1e-6)
    other = torch.tensor([[False, True, False], [False, False, True]])
    assert info_nce(LOGITS, other).item() == pytest.approx(-(ROWS[0][1] + ROWS[1][2]) / 2, rel=1e-6)
    with pytest.raises(ValueError):
        info_nce(LOGITS, MASK)


def test_uber_nce():
    expected = (-(ROWS[0][0] + ROWS[0][1]) / 2 - (ROWS[1][0] + ROWS[1][2]) / 2) / 2
    assert uber_nce(LOGITS, MASK).item() == pytest.approx(expected, rel=1e-6)


def test_mil_nce():
    p = [[math.exp(v) for v in row] for row in ROWS]
    expected = (-math.log(p[0][0] + p[0][1]) - math.log(p[1][0] + p[1][2])) / 2
    assert mil_nce(LOGITS, MASK).item() == pytest.approx(expected, rel=1e-6)


def test_single_positive_makes_all_losses_equal():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(4, 9, dtype=torch.bool)
    mask[:, 0] = True
    assert uber_nce(logits, mask).item() == pytest.approx(info_nce(logits).item(), rel=1e-6)
    assert mil_nce(logits, mask).item() == pytest.approx(info_nce(logits).item(), rel=1e-6)


def test_stable_at_large_logits():
    big = LOGITS * 1e4  # cosine / 0.07 is at most ~14, but nothing should overflow anyway
    for loss in (uber_nce(big, MASK), mil_nce(big, MASK), info_nce(big)):
        assert torch.isfinite(loss)


def test_label_positives():
    mask = label_positives(torch.tensor([1, 2]), torch.tensor([2, -1, 1, 1]))
    assert mask.tolist() == [[True, False, False, True, True], [True, True, False, False, False]]
