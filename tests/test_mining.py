"""CoCLR positive mining on constructed embeddings."""

import math

import torch

from coclr.mining import mine_positives, purity


def setup():
    """Queue entry j has other-view embedding e_j; the anchor's embedding scores entry j as 10 - j."""
    K = 10
    queue_other_view = torch.eye(K)
    other_view = (10.0 - torch.arange(K, dtype=torch.float))[None, :]  # (1, K): similarity 10 - j
    queue_group = torch.arange(K)  # every entry from its own video
    return other_view, queue_other_view, queue_group


def test_top_k_indices_and_mask():
    other_view, queue_other_view, queue_group = setup()
    mined = mine_positives(other_view, queue_other_view, torch.tensor([99]), queue_group, topk=3, drop_self=0.0)
    assert mined.indices.tolist() == [[0, 1, 2]]
    assert mined.positives.tolist() == [[True] + [True] * 3 + [False] * 7]


def test_same_group_always_positive_never_mined():
    other_view, queue_other_view, queue_group = setup()
    queue_group[1] = queue_group[6] = 70  # entries 1 and 6 come from the anchor's video (group 70)
    mined = mine_positives(other_view, queue_other_view, torch.tensor([70]), queue_group, topk=3, drop_self=0.0)
    assert mined.indices.tolist() == [[0, 2, 3]]  # entry 1, the second most similar, is skipped
    queue_positive = mined.positives[0, 1:]
    assert queue_positive.nonzero().flatten().tolist() == [0, 1, 2, 3, 6]


def test_invalid_slots_are_not_candidates():
    other_view, queue_other_view, queue_group = setup()
    valid = torch.arange(10) >= 8  # only 2 real keys: fewer than topk
    mined = mine_positives(other_view, queue_other_view, torch.tensor([99]), queue_group, topk=3, drop_self=0.0,
                           valid=valid)
    assert mined.indices.tolist() == [[8, 9, -1]]
    assert mined.positives[0, 1:].nonzero().flatten().tolist() == [8, 9]


def test_self_positive_drop_probability_and_determinism():
    n, K = 20000, 16
    other_view = torch.randn(n, 8, generator=torch.Generator().manual_seed(0))
    queue_other_view = torch.randn(8, K, generator=torch.Generator().manual_seed(1))
    group, queue_group = torch.zeros(n, dtype=torch.long), torch.ones(K, dtype=torch.long)
    first = mine_positives(other_view, queue_other_view, group, queue_group, generator=torch.Generator().manual_seed(2))
    again = mine_positives(other_view, queue_other_view, group, queue_group, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.positives, again.positives)
    kept = first.positives[:, 0].float().mean().item()
    assert abs(kept - 0.1) < 0.01
    assert (first.positives.sum(1) >= 5).all()  # mined positives always remain


def test_self_kept_when_nothing_mined():
    other_view, queue_other_view, _ = setup()
    queue_group = torch.full((10,), 7)  # the whole queue is the anchor's own video
    mined = mine_positives(other_view, queue_other_view, torch.tensor([7]), queue_group, drop_self=1.0)
    assert mined.positives[0, 0] and (mined.indices == -1).all()


def test_purity():
    indices = torch.tensor([[0, 1, -1], [2, 3, 4]])
    queue_label = torch.tensor([5, 6, 5, 5, 6])
    assert purity(indices, torch.tensor([5, 6]), queue_label) == 2 / 5
    assert math.isnan(purity(torch.full((1, 2), -1), torch.tensor([5]), queue_label))


def test_bf16_autocast_mines_what_fp32_mines():
    """Under bf16 autocast the similarities stay fp32. In bf16 they tie and reorder close candidates:
    before the fix 16 of these 256 rows mined another top-5 set (the paper's d 128, K 2048)."""
    g = torch.Generator().manual_seed(0)
    other_view = torch.nn.functional.normalize(torch.randn(256, 128, generator=g), dim=1)
    queue_other_view = torch.nn.functional.normalize(torch.randn(128, 2048, generator=g), dim=0)
    group, queue_group = torch.arange(256), torch.arange(1000, 3048)

    def mine():
        return mine_positives(other_view, queue_other_view, group, queue_group, topk=5,
                              generator=torch.Generator().manual_seed(1))

    fp32 = mine()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = mine()
    assert torch.equal(bf16.indices, fp32.indices) and torch.equal(bf16.positives, fp32.positives)
