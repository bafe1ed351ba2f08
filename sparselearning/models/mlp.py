"""Fully connected networks: LeNet-300-100 and any `MLP(widths)`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from sparselearning.models.widths import small_dense_width


class MLP(nn.Module):
    """Linear layers with ReLU between them; inputs are flattened. `widths` = [in, hidden..., out]."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"an MLP needs at least input and output widths, got {list(widths)}")
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(fan_in, fan_out))
            if index < len(widths) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs.flatten(1))


class LeNet300100(MLP):
    """LeNet-300-100 (LeCun et al. 1998) for 28x28 inputs; `density` < 1 narrows it for Small-Dense."""

    def __init__(self, num_classes: int = 10, input_size: int = 784, density: float = 1.0):
        hidden = [small_dense_width(300, density), small_dense_width(100, density)]
        super().__init__([input_size, *hidden, num_classes])
