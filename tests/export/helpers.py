"""Small models of each family with random masks, and the masked reference they must reproduce."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from sparselearning.models import MLP, LeNet5, LeNet300100, WideResNet

# name -> (factory, input shape, spec that rebuilds it)
FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], dict]] = {
    "lenet300-100": (LeNet300100, (1, 28, 28), {"name": "lenet300-100", "kwargs": {}}),
    "lenet5": (LeNet5, (1, 28, 28), {"name": "lenet5", "kwargs": {}}),
    "wrn-10-1": (
        lambda: WideResNet(depth=10, widen_factor=1),
        (3, 32, 32),
        {"name": "wrn-22-2", "kwargs": {"depth": 10, "widen_factor": 1}},
    ),
    "mlp": (lambda: MLP([48, 32, 16, 10]), (48,), {"name": "MLP", "kwargs": {"widths": [48, 32, 16, 10]}}),
}


def random_masks(model: nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random mask of about `density` for the weight of every Linear and Conv2d."""
    generator = torch.Generator().manual_seed(seed)
    return {
        f"{name}.weight": torch.rand(module.weight.shape, generator=generator) < density
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
    }


def with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics and affine parameters, so eval mode uses them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
    return model


def masked_reference(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """The model with its masks multiplied in, in eval mode: what an export must compute."""
    reference = copy.deepcopy(model).eval()
    parameters = dict(reference.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    return reference


def max_difference(first: nn.Module, second: nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return float((first(inputs) - second(inputs)).abs().max())
