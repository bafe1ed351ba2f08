"""Models used by the experiments; `registry` maps the config names to constructors."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from sparselearning.models.lenet5 import LeNet5
from sparselearning.models.mlp import MLP, LeNet300100
from sparselearning.models.resnet import ResNet, ResNet50
from sparselearning.models.vit import VisionTransformer
from sparselearning.models.wide_resnet import WideResNet

registry: dict[str, Callable[..., nn.Module]] = {
    "lenet300-100": LeNet300100,
    "lenet5": LeNet5,
    # depth and widen_factor are pinned here but keyword arguments still override them (eg: depth=28, widen_factor=10).
    "wrn-22-2": functools.partial(WideResNet, depth=22, widen_factor=2),
    "resnet50": ResNet50,
    "vit-tiny": VisionTransformer,
}

__all__ = ["MLP", "LeNet5", "LeNet300100", "ResNet", "ResNet50", "VisionTransformer", "WideResNet", "registry"]
