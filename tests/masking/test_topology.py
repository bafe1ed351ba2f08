"""The arithmetic of a mask update, and the record of what changed."""

from __future__ import annotations

import math

import torch
from torch import nn

from sparselearning import methods
from sparselearning.masking.topology import TopologyChange, redistribution_shares, regrowth_counts


def test_shares_are_the_statistic_over_its_sum_ignoring_nan() -> None:
    total, shares = redistribution_shares({"a": 1.0, "b": 3.0, "c": float("nan")})
    assert total == 4.0 and shares["a"] == 0.25 and shares["b"] == 0.75 and math.isnan(shares["c"])
    assert redistribution_shares({"a": 0.0, "b": 0.0}) == (0.0, {"a": 0.0, "b": 0.0})


def test_without_redistribution_each_layer_regrows_what_it_lost() -> None:
    counts = regrowth_counts(["a", "b"], {"a": 5, "b": 2, "c": 0}, redistribute=False, shares={}, capacities={})
    assert counts == {"a": 5, "b": 2}


def test_redistribution_splits_the_loss_by_share_within_capacity_exactly() -> None:
    counts = regrowth_counts(
        ["a", "b", "c"], {"a": 6, "b": 4, "c": 0}, redistribute=True,
        shares={"a": 0.5, "b": 0.25, "c": 0.25}, capacities={"a": 3, "b": 100, "c": 100},
    )  # fmt: skip
    assert counts["a"] == 3, "capped at its inactive positions"
    assert sum(counts.values()) == 10


def test_an_update_returns_what_it_dropped_and_grew_per_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30, bias=False), nn.ReLU(), nn.Linear(30, 5, bias=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.2, total_steps=100)
    model(torch.randn(16, 20)).pow(2).sum().backward()
    before = {name: int(mask.sum()) for name, mask in masking.mask_dict.items()}
    change = masking.update_connections()
    assert isinstance(change, TopologyChange) and change.step == 0 and masking.mask_step == 1
    assert change.total_removed > 0 and change.removed == change.grown, "RigL regrows in place what it drops"
    assert {name: int(mask.sum()) for name, mask in change.masks.items()} == before
