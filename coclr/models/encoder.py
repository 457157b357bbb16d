"""Encoder = backbone + projection head, indexed like the reference (``0`` backbone, ``2``/``4`` head).

Training uses the L2-normalised projection; evaluation uses :meth:`Encoder.features`,
the pooled backbone output before the head.
"""

import torch.nn.functional as F
from torch import nn


class Encoder(nn.Sequential):
    """backbone -> global average pool -> 1x1x1 conv D->D -> ReLU -> 1x1x1 conv D->dim."""

    def __init__(self, backbone: nn.Module, dim: int = 128):
        width = backbone.out_dim
        super().__init__(
            backbone,
            nn.AdaptiveAvgPool3d(1),
            nn.Conv3d(width, width, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, dim, 1, bias=True),
        )
        self.dim = dim

    def forward(self, x):
        """(B, dim) unit-norm embeddings, fp32 even under autocast: the contrastive head and mining
        compare them to within bf16's resolution (docs/model.md, "Numerics")."""
        return F.normalize(super().forward(x).flatten(1).float(), dim=1)

    def features(self, x):
        """(B, D) pooled backbone features, the representation that is evaluated."""
        return self[1](self[0](x)).flatten(1)
