"""ResNet with bottleneck blocks for 32x32 images: the CIFAR ResNet-50 of the RigL reproducibility experiments.

It differs from the ImageNet ResNet-50 only in the stem: one 3x3 stride-1 convolution to 64 channels and no max-pool,
so a 32x32 image reaches the last group at 4x4 instead of being reduced to 1x1. The stride of a downsampling block sits
on its 3x3 convolution, and projection shortcuts (1x1 conv + BN) are used wherever the shape changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.models.widths import small_dense_width

EXPANSION = 4
"""A bottleneck block outputs `EXPANSION` times the channels of its inner 3x3 convolution."""


class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU, conv3x3(stride)-BN-ReLU, conv1x1-BN, plus the shortcut, then ReLU (post-activation).

    :param in_channels: channels coming in
    :param mid_channels: channels of the two inner convolutions
    :param out_channels: channels going out (normally `EXPANSION * mid_channels`)
    :param stride: stride of the 3x3 convolution and of the projection shortcut
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.conv1(inputs)))
        hidden = torch.relu(self.bn2(self.conv2(hidden)))
        hidden = self.bn3(self.conv3(hidden))
        return torch.relu(hidden + self.shortcut(inputs))


class ResNet(nn.Module):
    """Bottleneck ResNet for 32x32 images with `blocks[i]` blocks in group i (widths 64, 128, 256, 512, x4 out).

    `density` < 1 multiplies every width (stem, inner and output channels of every block) by sqrt(density),
    each rounded on its own by `small_dense_width`, for the Small-Dense baseline; `num_classes` is never narrowed.
    """

    def __init__(self, blocks: Sequence[int], num_classes: int = 100, in_channels: int = 3, density: float = 1.0):
        super().__init__()
        blocks = list(blocks)
        if len(blocks) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in blocks):
            raise SparseLearningError(f"ResNet blocks must be 4 whole numbers >= 1 (one per group), got {blocks!r}")
        stem_width = small_dense_width(64, density)
        self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        groups: list[nn.Module] = []
        width_in = stem_width
        for count, planes, stride in zip(blocks, (64, 128, 256, 512), (1, 2, 2, 2), strict=True):
            mid, out = small_dense_width(planes, density), small_dense_width(EXPANSION * planes, density)
            layers = [Bottleneck(width_in, mid, out, stride)]
            layers += [Bottleneck(out, mid, out) for _ in range(count - 1)]
            groups.append(nn.Sequential(*layers))
            width_in = out
        self.layer1, self.layer2, self.layer3, self.layer4 = groups
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(width_in, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.conv1(inputs)))
        hidden = self.layer4(self.layer3(self.layer2(self.layer1(hidden))))
        return self.linear(self.pool(hidden).flatten(1))


class ResNet50(ResNet):
    """CIFAR ResNet-50: bottleneck blocks [3, 4, 6, 3]; about 23.5M parameters with 10 classes, 23.7M with 100."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3, density: float = 1.0):
        super().__init__([3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels, density=density)
