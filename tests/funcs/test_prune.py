"""Prune functions: exact masks on hand-made tensors, exact counts, active positions only."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import MagnitudePruneDecay
from sparselearning.funcs.prune import (
    global_magnitude_prune,
    magnitude_prune,
    registry,
    struct_magnitude_prune,
)
from sparselearning.train.build import build_masking
from sparselearning.train.settings import Schedule
from tests.helpers import linear_with, masking_for


def test_registry_keys() -> None:
    assert set(registry) == {
        "magnitude",
        "global-magnitude",
        "struct-magnitude-mean",
        "struct-magnitude-max",
        "srigl",
        "srigl-no-ablation",
    }


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


def test_global_prune_with_a_pruning_schedule_removes_down_to_its_exact_target() -> None:
    weight = torch.arange(1.0, 31.0).view(3, 10)
    masking = _dense_masking(weight)
    # the rate alone (0.95 of 30 = 28.5 weights) rounds to 28; the schedule's exact target is round(0.05 * 30) = 2
    masking.prune_rate_decay = MagnitudePruneDecay(final_sparsity=1 - 0.05, T_max=10, T_start=0, interval=10)
    masking.prune_rate_decay.step(10, current_sparsity=0.0)
    assert round(masking.prune_rate * 30) == 28
    assert global_magnitude_prune(masking) == 28
    masking._refresh()
    assert masking.stats.total_nonzero == 2 == round(0.05 * 30)
    assert masking.mask_dict["0.weight"].view(-1).nonzero().view(-1).tolist() == [28, 29], "the two largest"
    assert global_magnitude_prune(masking) == 0, "already at the target: nothing more"


def _tiny_model(tied: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3))
    if tied:  # three magnitudes only: most of the weights tie with others
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(torch.randint(-1, 2, parameter.shape).float() * 0.5)
    return model


def _gradual_pruning(route: str, model: nn.Module, optimizer, density, total_steps, interval, fractions) -> Masking:
    """A pruning Masking as `methods.pruning` builds it, or as `sparselearning train masking=Pruning` does
    (whose settings turn the same fractions into steps the same way)."""
    start_fraction, end_fraction = fractions
    if route == "methods":
        return methods.pruning(
            model,
            optimizer,
            density=density,
            total_steps=total_steps,
            interval=interval,
            start_fraction=start_fraction,
            end_fraction=end_fraction,
        )
    cfg = OmegaConf.create({"seed": 0, "masking": {"name": "Pruning", "density": density}})
    start, end = int(start_fraction * total_steps), int(end_fraction * total_steps)
    return build_masking(cfg, model, optimizer, Schedule(1, total_steps, total_steps, interval, start, end))


def _exact_pruning_run(route, total_steps, interval, fractions, density, tied) -> None:
    """Train a tiny model with gradual pruning; the count is exact from the last update step that happens on,
    or the set-up refuses a schedule in which no update step happens."""
    model = _tiny_model(tied)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0 if tied else 0.05, momentum=0.9)
    start, end = (int(fraction * total_steps) for fraction in fractions)
    last_step = min(end, total_steps - 1)  # steps are 0 .. total_steps - 1
    updates = [t for t in range(max(start, 1), last_step + 1) if t % interval == 0]
    if not updates:
        with pytest.raises(SparseLearningError, match="prun"):
            _gradual_pruning(route, model, optimizer, density, total_steps, interval, fractions)
        return
    masking = _gradual_pruning(route, model, optimizer, density, total_steps, interval, fractions)
    target = round(density * masking.total_params)
    counts = []
    generator = torch.Generator().manual_seed(total_steps)
    for _ in range(total_steps):
        inputs, labels = torch.randn(4, 6, generator=generator), torch.randint(0, 3, (4,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        masking.step()
        counts.append(masking.stats.total_nonzero)
    assert counts == sorted(counts, reverse=True), "pruning only removes"
    assert counts[updates[-1]] == target, "the target is reached at the last update step"
    assert counts[-1] == target == sum(int(mask.sum()) for mask in masking.mask_dict.values())


# (end, start) in hundredths of the run, start before end
WINDOWS = st.integers(1, 100).flatmap(lambda end: st.tuples(st.integers(0, end - 1), st.just(end)))


@settings(max_examples=40, deadline=None)
@given(
    total_steps=st.integers(2, 40),
    interval=st.integers(1, 12),
    window=WINDOWS,
    density=st.integers(1, 1000).map(lambda k: k / 1000),
    route=st.sampled_from(["methods", "build"]),
    tied=st.booleans(),
)
def test_gradual_pruning_ends_at_exactly_round_density_times_total(
    total_steps, interval, window, density, route, tied
) -> None:
    fractions = (window[0] / 100, window[1] / 100)
    start, end = (int(fraction * total_steps) for fraction in fractions)
    assume(start < end)  # what both routes accept; the rest are refused before any Masking exists
    _exact_pruning_run(route, total_steps, interval, fractions, density, tied)


def test_methods_pruning_to_the_end_of_training_is_exact() -> None:
    _exact_pruning_run("methods", total_steps=20, interval=5, fractions=(0.0, 1.0), density=0.1, tied=False)
