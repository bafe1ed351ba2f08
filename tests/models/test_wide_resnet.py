"""WideResNet: output shape, parameter count derived from the architecture, Small-Dense widths, depth rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.models import WideResNet


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def expected_wrn_parameters(depth: int, widen_factor: int, num_classes: int, in_channels: int = 3) -> int:
    """Count the trainable parameters of WRN-depth-k from its description (bias-free convs, BN = weight + bias)."""
    blocks = (depth - 4) // 6
    stem = 16
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    total = 3 * 3 * in_channels * stem
    width_in = stem
    for width, stride in zip(widths, (1, 2, 2), strict=True):
        for index in range(blocks):
            fan_in = width_in if index == 0 else width
            total += 2 * fan_in  # BN before the first conv
            total += 3 * 3 * fan_in * width  # first 3x3 conv
            total += 2 * width  # BN before the second conv
            total += 3 * 3 * width * width  # second 3x3 conv
            if index == 0 and (stride != 1 or fan_in != width):
                total += fan_in * width  # 1x1 shortcut where the shape changes (channels or stride)
        width_in = width
    total += 2 * width_in  # final BN
    total += width_in * num_classes + num_classes  # classifier
    return total


def test_forward_shape_default_wrn_22_2() -> None:
    model = WideResNet(num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("depth", "widen_factor"), [(10, 1), (10, 2), (16, 1)])
def test_parameter_count_matches_architecture(depth: int, widen_factor: int) -> None:
    model = WideResNet(depth=depth, widen_factor=widen_factor, num_classes=7)
    assert parameter_count(model) == expected_wrn_parameters(depth, widen_factor, num_classes=7)


def test_wrn_10_1_by_hand() -> None:
    # One block per group, widths 16, 32, 64; only groups 2 and 3 need a 1x1 shortcut (group 1 keeps 16 channels).
    stem = 27 * 16
    group1 = 2 * 16 + 9 * 16 * 16 + 2 * 16 + 9 * 16 * 16
    group2 = 2 * 16 + 9 * 16 * 32 + 2 * 32 + 9 * 32 * 32 + 16 * 32
    group3 = 2 * 32 + 9 * 32 * 64 + 2 * 64 + 9 * 64 * 64 + 32 * 64
    head = 2 * 64 + 64 * 10 + 10
    assert (
        parameter_count(WideResNet(depth=10, widen_factor=1, num_classes=10)) == stem + group1 + group2 + group3 + head
    )


def test_wrn_22_2_is_about_1_1_million_parameters() -> None:
    count = parameter_count(WideResNet(depth=22, widen_factor=2, num_classes=10))
    assert count == expected_wrn_parameters(22, 2, num_classes=10)
    assert 1.0e6 < count < 1.2e6


def test_density_quarter_halves_every_width() -> None:
    full = WideResNet(depth=10, widen_factor=2, num_classes=10)
    narrow = WideResNet(depth=10, widen_factor=2, num_classes=10, density=0.25)
    full_convs = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    narrow_convs = [m for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert len(full_convs) == len(narrow_convs) > 0
    for big, small in zip(full_convs, narrow_convs, strict=True):
        assert small.out_channels * 2 == big.out_channels
    assert narrow.fc.in_features * 2 == full.fc.in_features
    assert narrow.fc.out_features == full.fc.out_features == 10
    with torch.no_grad():
        assert narrow.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [20, 4, 0, -2, 23, 22.0, True])
def test_bad_depth_raises_one_line_naming_value_and_rule(depth: object) -> None:
    with pytest.raises(SparseLearningError) as caught:
        WideResNet(depth=depth)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert repr(depth) in message
    assert "(depth - 4) % 6 == 0" in message


def test_dropout_and_in_channels() -> None:
    model = WideResNet(depth=10, widen_factor=1, num_classes=5, dropout=0.3, in_channels=1)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())
    model.train()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    with pytest.raises(SparseLearningError):
        WideResNet(depth=10, dropout=1.5)
