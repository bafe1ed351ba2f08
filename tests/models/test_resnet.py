"""CIFAR ResNet-50: output shape, parameter count derived from the architecture, Small-Dense widths, bad blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.models import ResNet, ResNet50


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def expected_resnet_parameters(blocks: list[int], num_classes: int, in_channels: int = 3) -> int:
    """Count the parameters of a CIFAR bottleneck ResNet from its description (bias-free convs, BN = weight + bias)."""
    total = 3 * 3 * in_channels * 64 + 2 * 64  # stem conv + BN
    width_in = 64
    for count, planes, stride in zip(blocks, (64, 128, 256, 512), (1, 2, 2, 2), strict=True):
        out = 4 * planes
        for index in range(count):
            fan_in = width_in if index == 0 else out
            total += fan_in * planes + 2 * planes  # 1x1 reduce + BN
            total += 3 * 3 * planes * planes + 2 * planes  # 3x3 + BN
            total += planes * out + 2 * out  # 1x1 expand + BN
            if index == 0 and (stride != 1 or fan_in != out):
                total += fan_in * out + 2 * out  # projection shortcut: 1x1 conv + BN
        width_in = out
    return total + width_in * num_classes + num_classes  # classifier


def test_forward_shape() -> None:
    model = ResNet50(num_classes=100).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_tiny_resnet_parameter_count_by_hand() -> None:
    # One bottleneck per group; every first block projects (64 -> 256 channels, then strides 2).
    stem = 27 * 64 + 2 * 64
    group1 = (64 * 64 + 128) + (9 * 64 * 64 + 128) + (64 * 256 + 512) + (64 * 256 + 512)
    group2 = (256 * 128 + 256) + (9 * 128 * 128 + 256) + (128 * 512 + 1024) + (256 * 512 + 1024)
    group3 = (512 * 256 + 512) + (9 * 256 * 256 + 512) + (256 * 1024 + 2048) + (512 * 1024 + 2048)
    group4 = (1024 * 512 + 1024) + (9 * 512 * 512 + 1024) + (512 * 2048 + 4096) + (1024 * 2048 + 4096)
    head = 2048 * 10 + 10
    expected = stem + group1 + group2 + group3 + group4 + head
    assert expected == expected_resnet_parameters([1, 1, 1, 1], num_classes=10)
    assert parameter_count(ResNet([1, 1, 1, 1], num_classes=10)) == expected


@pytest.mark.parametrize("num_classes", [10, 100])
def test_resnet50_parameter_count(num_classes: int) -> None:
    count = parameter_count(ResNet50(num_classes=num_classes))
    assert count == expected_resnet_parameters([3, 4, 6, 3], num_classes=num_classes)
    # The figure usually quoted for the CIFAR-10 ResNet-50 (eg: kuangliu/pytorch-cifar) is 23,520,842.
    assert count == 23_520_842 + 2048 * (num_classes - 10) + (num_classes - 10)


def test_no_max_pool_and_stride_one_stem() -> None:
    model = ResNet50()
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.out_channels == 64
    hidden = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        hidden = torch.relu(model.bn1(model.conv1(hidden)))
        hidden = model.layer4(model.layer3(model.layer2(model.layer1(hidden))))
    assert hidden.shape == (1, 2048, 4, 4)


def test_density_quarter_halves_every_width() -> None:
    full = ResNet50(num_classes=100)
    narrow = ResNet50(num_classes=100, density=0.25)
    full_convs = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    narrow_convs = [m for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert len(full_convs) == len(narrow_convs) == 53
    for big, small in zip(full_convs, narrow_convs, strict=True):
        assert small.out_channels * 2 == big.out_channels
    assert narrow.linear.in_features == 1024
    assert narrow.linear.out_features == 100
    with torch.no_grad():
        assert narrow.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("blocks", [[3, 4, 6], [3, 0, 6, 3], [3, 4.0, 6, 3]])
def test_bad_blocks_raise(blocks: list) -> None:
    with pytest.raises(SparseLearningError, match="ResNet blocks"):
        ResNet(blocks)
