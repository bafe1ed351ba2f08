"""Redistribution statistics: mean |momentum| / |grad| over active weights, active counts."""

from __future__ import annotations

import pytest
import torch

from sparselearning.funcs.redistribute import (
    grad_redistribution,
    momentum_redistribution,
    nonzero_redistribution,
    registry,
)
from tests.helpers import linear_with, masking_for


def test_registry_keys() -> None:
    assert set(registry) == {"momentum", "grad", "nonzero", "none"}


def test_statistics_over_active_weights_only() -> None:
    masking, optimizer = masking_for(linear_with(torch.zeros(2, 2)), density=1.0)
    weight = masking.params["0.weight"]
    mask = torch.tensor([[True, False], [True, True]])
    weight.grad = torch.tensor([[-3.0, 100.0], [1.0, 2.0]])
    optimizer.state[weight]["momentum_buffer"] = torch.tensor([[1.0, 50.0], [-2.0, 0.0]])
    assert grad_redistribution(masking, "0.weight", weight, mask) == pytest.approx(2.0)
    assert momentum_redistribution(masking, "0.weight", weight, mask) == pytest.approx(1.0)
    assert nonzero_redistribution(masking, "0.weight", weight, mask) == 3.0
    assert grad_redistribution(masking, "0.weight", weight, torch.zeros(2, 2, dtype=torch.bool)) == 0.0


def test_the_gradient_statistic_reads_bool_and_float_masks_alike() -> None:
    weight = torch.nn.Parameter(torch.zeros(2, 3))
    weight.grad = torch.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]])
    as_bool = torch.tensor([[True, False, True], [False, False, True]])
    masking = None  # the statistic reads only the weight and the mask
    assert grad_redistribution(masking, "w", weight, as_bool) == 10.0 / 3
    assert grad_redistribution(masking, "w", weight, as_bool.float()) == 10.0 / 3
    assert grad_redistribution(masking, "w", weight, torch.zeros(2, 3, dtype=torch.bool)) == 0.0
