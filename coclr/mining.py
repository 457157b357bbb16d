"""CoCLR positive mining: the frozen other view picks which queue entries are positives.

For the trained view's key clip, the other view's embedding is compared with the
other-view embeddings stored beside the queued keys; the top-k most similar
entries become positives. Queue entries of the anchor's own source group (same
video) are always positives and are excluded from the top-k, so they never count
as mined. When something was mined, the clip's own key is dropped from the
numerator with probability ``drop_self`` (the reference's faster-converging
variant); it stays in the denominator because it stays in the logits.
"""

from typing import NamedTuple

import torch


class Mined(NamedTuple):
    positives: torch.Tensor  # (B, 1+K) bool, column 0 = the instance's own key
    indices: torch.Tensor  # (B, topk) queue indices mined, -1 where there were too few candidates


def candidates(group, queue_group, valid=None):
    """(B, K) bool: queue entries that may be mined, i.e. real keys outside the anchor's group."""
    candidate = group[:, None] != queue_group[None, :]
    return candidate if valid is None else candidate & valid[None, :]


def mine_positives(other_view, queue_other_view, group, queue_group, topk=5, drop_self=0.9, valid=None,
                   generator=None):
    """Positive mask for :func:`coclr.losses.mil_nce`.

    other_view: (B, d) other-view embedding of the key clip; queue_other_view: (d, K);
    group: (B,) source-group ids (>= 0); queue_group: (K,), -1 for no group;
    valid: optional (K,) bool, False for queue slots that hold no real key yet.
    """
    same_group = group[:, None] == queue_group[None, :]
    candidate = candidates(group, queue_group, valid)
    with torch.autocast(other_view.device.type, enabled=False):  # bf16 would tie and reorder close candidates
        sim = (other_view.float() @ queue_other_view).masked_fill(~candidate, float("-inf"))
    top = sim.topk(min(topk, sim.shape[1]), dim=1)
    hit = torch.isfinite(top.values)
    mined = torch.zeros_like(same_group).scatter_(1, top.indices, hit)
    draw = torch.rand(sim.shape[0], generator=generator, device=generator.device if generator else sim.device)
    drop = hit.any(1) & (draw.to(sim.device) < drop_self)
    positives = torch.cat([~drop[:, None], same_group | mined], dim=1)
    return Mined(positives, top.indices.masked_fill(~hit, -1))


def purity(indices, label, queue_label) -> float:
    """Fraction of mined positives whose label equals the anchor's (a diagnostic only)."""
    hit = indices >= 0
    if not bool(hit.any()):
        return float("nan")
    correct = queue_label[indices.clamp(min=0)] == label[:, None]
    return (correct & hit).sum().item() / hit.sum().item()


def purity_baseline(label, group, queue_label, queue_group, valid) -> float:
    """The purity of picking candidates at random: the level that mining has to beat.

    Candidates are the real queue entries outside the anchor's own group, as in mining.
    """
    candidate = candidates(group, queue_group, valid)
    same = (queue_label[None, :] == label[:, None]) & candidate
    return same.sum().item() / max(candidate.sum().item(), 1)
