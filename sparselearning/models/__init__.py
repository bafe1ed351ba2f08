"""Models used by the experiments; `registry` maps the config names to constructors."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sparselearning.models.lenet5 import LeNet5
from sparselearning.models.mlp import MLP, LeNet300100

registry: dict[str, Callable[..., nn.Module]] = {
    "lenet300-100": LeNet300100,
    "lenet5": LeNet5,
}

__all__ = ["MLP", "LeNet5", "LeNet300100", "registry"]
