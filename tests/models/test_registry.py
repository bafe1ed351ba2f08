"""Every registry entry builds with its defaults and runs forward on an input of the shape it expects."""

from __future__ import annotations

import pytest
import torch

from sparselearning.models import ResNet50, WideResNet, registry

INPUT_SHAPES = {
    "lenet300-100": (2, 1, 28, 28),
    "lenet5": (2, 1, 28, 28),
    "wrn-22-2": (2, 3, 32, 32),
    "resnet50": (2, 3, 32, 32),
    "vit-tiny": (2, 1, 28, 28),
}


def test_every_entry_has_an_input_shape() -> None:
    assert set(registry) == set(INPUT_SHAPES)


@pytest.mark.parametrize("name", sorted(registry))
def test_entry_builds_and_runs_forward(name: str) -> None:
    model = registry[name](num_classes=10).eval()
    with torch.no_grad():
        outputs = model(torch.randn(*INPUT_SHAPES[name]))
    assert outputs.shape == (2, 10)
    assert torch.isfinite(outputs).all()


@pytest.mark.parametrize("name", sorted(registry))
def test_entry_accepts_density(name: str) -> None:
    model = registry[name](num_classes=10, density=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(*INPUT_SHAPES[name])).shape == (2, 10)


def test_wrn_entry_defaults_and_overrides() -> None:
    default = registry["wrn-22-2"]()
    assert isinstance(default, WideResNet)
    assert len(default.block1) == 3
    assert default.block3[0].conv1.out_channels == 128
    override = registry["wrn-22-2"](depth=10, widen_factor=1)
    assert len(override.block1) == 1
    assert override.block3[0].conv1.out_channels == 64


def test_resnet50_entry_defaults_to_100_classes() -> None:
    model = registry["resnet50"]()
    assert isinstance(model, ResNet50)
    assert model.linear.out_features == 100
