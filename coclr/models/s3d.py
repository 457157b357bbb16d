"""S3D backbone (Xie et al., 2018) built the way the CoCLR reference builds it.

Module names (``Conv_1a.conv1``, ``Mixed_3b.branch1.1.bn2``, ...) equal those of
the authors' released checkpoints, so their weights load key for key. The same
code builds reduced variants for fast CPU runs: ``width`` scales every channel
count and ``depth`` keeps only the first stages (3: up to Mixed_3c, 4: up to
Mixed_4f, 5: the full network).
"""

from collections import OrderedDict

import torch
from torch import nn

# Inception widths [branch0, branch1 1x1x1, branch1 STConv, branch2 1x1x1, branch2 STConv, branch3].
INCEPTION = {
    3: {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64)},
    4: {
        "Mixed_4b": (192, 96, 208, 16, 48, 64),
        "Mixed_4c": (160, 112, 224, 24, 64, 64),
        "Mixed_4d": (128, 128, 256, 24, 64, 64),
        "Mixed_4e": (112, 144, 288, 32, 64, 64),
        "Mixed_4f": (256, 160, 320, 32, 128, 128),
    },
    5: {"Mixed_5b": (256, 160, 320, 32, 128, 128), "Mixed_5c": (384, 192, 384, 48, 128, 128)},
}
# Each stage from 4 on starts with a pooling that halves time and space.
STAGE_POOL = {
    4: ("MaxPool_4a", dict(kernel_size=3, stride=2, padding=1)),
    5: ("MaxPool_5a", dict(kernel_size=2, stride=2, padding=0)),
}
CHANNEL_MULTIPLE = 8  # reduced widths are rounded to this (friendly to vectorised kernels)


def scaled(channels: int, width: float) -> int:
    """Channel count at ``width``; exact at width 1 (all reference widths are multiples of 8)."""
    return max(CHANNEL_MULTIPLE, int(channels * width / CHANNEL_MULTIPLE + 0.5) * CHANNEL_MULTIPLE)


def batch_norm(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class Unit(nn.Module):
    """Conv (no bias) -> BN -> ReLU."""

    def __init__(self, cin, cout, kernel_size=1, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel_size, stride, padding, bias=False)
        self.bn = batch_norm(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class STConv(nn.Module):
    """Separable k x k x k conv: 1xkxk spatial then kx1x1 temporal, each with BN and ReLU."""

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, (1, k, k), (1, stride, stride), (0, padding, padding), bias=False)
        self.bn1 = batch_norm(cout)
        self.conv2 = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1), (padding, 0, 0), bias=False)
        self.bn2 = batch_norm(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class Inception(nn.Module):
    """Four parallel branches concatenated along channels."""

    def __init__(self, cin, widths):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch0 = nn.Sequential(Unit(cin, b0))
        self.branch1 = nn.Sequential(Unit(cin, b1a), STConv(b1a, b1b, 3, padding=1))
        self.branch2 = nn.Sequential(Unit(cin, b2a), STConv(b2a, b2b, 3, padding=1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), Unit(cin, b3))
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


class S3D(nn.Sequential):
    """S3D without feature gating; ``out_dim`` is the channel count of the output map.

    Input B x in_channels x T x H x W; the full network maps 32 x 128 x 128 to
    1024 x 4 x 4 x 4 (time stride 8, space stride 32).
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0, depth: int = 5):
        if depth not in INCEPTION:
            raise ValueError(f"depth must be one of {sorted(INCEPTION)}, got {depth}")

        def c(n):
            return scaled(n, width)

        pool_2d = dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        layers = OrderedDict(
            Conv_1a=STConv(in_channels, c(64), 7, stride=2, padding=3),
            MaxPool_2a=nn.MaxPool3d(**pool_2d),
            Conv_2b=Unit(c(64), c(64)),
            Conv_2c=STConv(c(64), c(192), 3, padding=1),
            MaxPool_3a=nn.MaxPool3d(**pool_2d),
        )
        channels = c(192)
        for stage in range(3, depth + 1):
            if stage in STAGE_POOL:
                name, kwargs = STAGE_POOL[stage]
                layers[name] = nn.MaxPool3d(**kwargs)
            for name, widths in INCEPTION[stage].items():
                layers[name] = Inception(channels, [c(w) for w in widths])
                channels = layers[name].out_channels
        super().__init__(layers)
        self.out_dim = channels


def build_backbone(arch: dict) -> S3D:
    """Backbone from a plain config dict (keys ``in_channels``, ``width``, ``depth``).

    Checkpoints store this dict, so a model can be rebuilt from the file alone.
    """
    return S3D(**arch)
