"""Wide ResNet for CIFAR (Zagoruyko & Komodakis 2016): the WRN-22-2 of the sparse-training benchmarks (RigL, SNFS).

WRN-d-k has a 3x3 stem convolution to 16 channels, then three groups of (d - 4) / 6 pre-activation basic blocks
of widths 16k, 32k and 64k (the last two groups halve the resolution), a final BN + ReLU, global average pooling and
one linear classifier. Convolutions carry no bias because a BatchNorm always follows them.
"""

from __future__ import annotations

import torch
from torch import nn

from sparselearning.errors import SparseLearningError, check_fraction, check_positive_int
from sparselearning.models.widths import small_dense_width


def blocks_per_group(depth: int) -> int:
    """Basic blocks in each of the three groups of a WRN of `depth`: (depth - 4) / 6, which must be whole and >= 1.

    Each basic block holds two 3x3 convolutions and there are three groups, hence the 6; the paper's depth counts 4
    layers outside the blocks. Checked here so a typo such as 20 fails at construction with the rule in the message.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
        raise SparseLearningError(
            f"WideResNet depth must satisfy (depth - 4) % 6 == 0 with depth >= 10 (10, 16, 22, 28, ...), got {depth!r}"
        )
    return (depth - 4) // 6


class WideBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3, plus the shortcut.

    When the block changes the shape (channels or stride) the shortcut is a 1x1 convolution of the pre-activated
    input, so the first BN + ReLU is shared by both paths; otherwise the raw input is added back unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(p=dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(inputs))
        residual = self.conv1(activated)
        residual = self.conv2(self.dropout(torch.relu(self.bn2(residual))))
        shortcut = inputs if self.shortcut is None else self.shortcut(activated)
        return residual + shortcut


class WideResNet(nn.Module):
    """WRN-`depth`-`widen_factor` for 32x32 images; `density` < 1 narrows every width by sqrt(density) (Small-Dense).

    :param depth: 6n + 4 for n >= 1 blocks per group (10, 16, 22, 28, ...); anything else raises SparseLearningError
    :param widen_factor: k, the multiplier of the group widths 16, 32 and 64
    :param num_classes: outputs of the final linear layer (never narrowed)
    :param dropout: dropout probability between the two convolutions of every block (the paper uses 0.3 on some runs)
    :param in_channels: channels of the input images
    :param density: Small-Dense width scaling; 1.0 is the standard network
    """

    def __init__(
        self,
        depth: int = 22,
        widen_factor: int = 2,
        num_classes: int = 10,
        dropout: float = 0.0,
        in_channels: int = 3,
        density: float = 1.0,
    ):
        super().__init__()
        blocks = blocks_per_group(depth)
        widen_factor = check_positive_int(widen_factor, "widen_factor")
        dropout = check_fraction(dropout, "dropout")
        stem_width, *group_widths = (
            small_dense_width(width, density) for width in (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        )
        self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        groups: list[nn.Module] = []
        width_in = stem_width
        for width, stride in zip(group_widths, (1, 2, 2), strict=True):
            layers = [WideBasicBlock(width_in, width, stride, dropout)]
            layers += [WideBasicBlock(width, width, 1, dropout) for _ in range(blocks - 1)]
            groups.append(nn.Sequential(*layers))
            width_in = width
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(width_in)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width_in, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation (fan-out, ReLU) for convolutions, BN as identity, zero classifier bias, as in the paper."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(inputs)
        hidden = self.block3(self.block2(self.block1(hidden)))
        hidden = torch.relu(self.bn(hidden))
        return self.fc(self.pool(hidden).flatten(1))
