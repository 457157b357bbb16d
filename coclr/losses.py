"""Contrastive losses over logits (B, 1+K): column 0 is the instance's own key, 1..K the queue.

``positives`` is a boolean mask of the same shape. All three are computed in
log space (log_softmax / logsumexp) so a temperature of 0.07 cannot overflow.
"""

import torch
import torch.nn.functional as F


def info_nce(logits, positives=None):
    """Cross-entropy with one positive per row: column 0 unless ``positives`` marks another."""
    if positives is None:
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    else:
        if not bool((positives.sum(1) == 1).all()):
            raise ValueError("info_nce needs exactly one positive per row")
        target = positives.long().argmax(1)
    return F.cross_entropy(logits, target)


def uber_nce(logits, positives):
    """Supervised-contrastive: mean over positives of -log softmax, then mean over rows."""
    log_prob = F.log_softmax(logits, dim=1)
    per_row = -(log_prob * positives).sum(1) / positives.sum(1)
    return per_row.mean()


def mil_nce(logits, positives):
    """Multi-positive NCE (CoCLR): -log of the summed softmax probability of all positives."""
    numerator = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - numerator).mean()


def label_positives(labels, queue_label):
    """UberNCE mask: the instance plus every queue entry with the anchor's label.

    Queue entries without a label hold -1 and never match a real label (>= 0).
    """
    same = labels[:, None] == queue_label[None, :]
    return torch.cat([torch.ones_like(same[:, :1]), same], dim=1)
