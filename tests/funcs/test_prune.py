"""Prune functions: exact masks on hand-made tensors, exact counts, active positions only."""

from __future__ import annotations

import torch
from torch import nn

from sparselearning.funcs.prune import (
    global_magnitude_prune,
    magnitude_prune,
    registry,
    struct_magnitude_prune,
)
from tests.helpers import linear_with, masking_for


def test_registry_keys() -> None:
    assert set(registry) == {"magnitude", "global-magnitude", "struct-magnitude-mean", "struct-magnitude-max"}


def _dense_masking(weight: torch.Tensor):
    masking, _ = masking_for(linear_with(weight), density=1.0)
    return masking


def test_magnitude_prune_drops_smallest_active_magnitudes() -> None:
    weight = torch.tensor([[0.5, -0.1, 0.3, 0.0], [-0.05, 0.9, -0.2, 0.7]])
    masking = _dense_masking(weight)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    masking.name2prune_rate["0.weight"] = 0.3  # ceil(0.3 * 7 active) = 3 removed
    pruned = magnitude_prune(masking, mask, masking.params["0.weight"], "0.weight")
    expected = torch.tensor([[True, False, True, False], [False, True, False, True]])
    assert torch.equal(pruned, expected)
    assert torch.equal(mask, torch.tensor([[True, True, True, False], [True, True, True, True]])), "input untouched"


def test_magnitude_prune_ignores_inactive_zeros_and_keeps_count_exact() -> None:
    weight = torch.arange(1.0, 101.0).view(10, 10)
    masking = _dense_masking(weight)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask.view(-1)[50:] = True
    masking.name2prune_rate["0.weight"] = 0.1
    pruned = magnitude_prune(masking, mask, masking.params["0.weight"], "0.weight")
    assert int(pruned.sum()) == 45
    assert torch.equal(pruned.view(-1)[:55], torch.zeros(55, dtype=torch.bool))
    assert bool(pruned.view(-1)[55:].all())


def test_zero_rate_returns_mask_unchanged() -> None:
    masking = _dense_masking(torch.randn(3, 3))
    mask = torch.ones(3, 3, dtype=torch.bool)
    masking.name2prune_rate["0.weight"] = 0.0
    assert torch.equal(magnitude_prune(masking, mask, masking.params["0.weight"], "0.weight"), mask)


def test_global_magnitude_prune_uses_one_threshold_across_layers() -> None:
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.1, 0.8], [0.3, 0.05]]))
        model[1].weight.copy_(torch.tensor([[0.2, 0.9], [0.04, 0.6], [0.7, 0.5]]))
    masking, _ = masking_for(model, density=1.0)
    masking.prune_rate_decay = type("Fixed", (), {"get_dr": lambda self: 0.4})()
    removed = global_magnitude_prune(masking)
    assert removed == 4  # round(0.4 * 10)
    assert torch.equal(masking.mask_dict["0.weight"], torch.tensor([[False, True], [True, False]]))
    assert torch.equal(masking.mask_dict["1.weight"], torch.tensor([[False, True], [False, True], [True, True]]))
    assert masking.stats.removed_dict == {"0.weight": 2, "1.weight": 2}


def test_struct_prune_removes_whole_kernels_by_criterion() -> None:
    conv = nn.Conv2d(2, 2, 2, bias=False)
    with torch.no_grad():
        # kernels (out, in): (0,0) mean 1, (0,1) mean 4 with max 4, (1,0) mean 2 but max 7, (1,1) mean 3
        conv.weight.copy_(
            torch.tensor(
                [
                    [[[1.0, 1.0], [1.0, 1.0]], [[4.0, 4.0], [4.0, 4.0]]],
                    [[[0.0, 0.5], [0.5, 7.0]], [[3.0, 3.0], [3.0, -3.0]]],
                ]
            )
        )
    masking, _ = masking_for(nn.Sequential(conv), density=1.0)
    mask = torch.ones_like(conv.weight, dtype=torch.bool)
    masking.name2prune_rate["0.weight"] = 0.5  # 2 of 4 kernels
    by_mean = struct_magnitude_prune(masking, mask, conv.weight, "0.weight", criterion=torch.mean)
    kept_mean = by_mean.view(4, 4).all(dim=1).tolist()
    assert kept_mean == [False, True, False, True]
    by_max = registry["struct-magnitude-max"](masking, mask, conv.weight, "0.weight")
    assert by_max.view(4, 4).all(dim=1).tolist() == [False, True, True, False]
    assert all(row.all() or not row.any() for row in by_mean.view(4, 4)), "kernels removed whole"
