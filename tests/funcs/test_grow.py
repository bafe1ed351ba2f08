"""Growth functions: largest scores among inactive positions only, exact counts, deterministic randomness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.funcs._layers import inactive_scores_at
from sparselearning.funcs.grow import (
    abs_grad_growth,
    momentum_growth,
    no_growth,
    random_growth,
    registry,
    struct_abs_grad_growth,
)
from tests.helpers import linear_with, masking_for


def test_registry_keys() -> None:
    assert set(registry) == {
        "absolute-gradient",
        "momentum",
        "random",
        "none",
        "struct-absolute-gradient-mean",
        "struct-absolute-gradient-min",
        "srigl",
    }


def _masking_with_mask(weight: torch.Tensor, mask: torch.Tensor):
    masking, optimizer = masking_for(linear_with(weight), density=1.0)
    masking.mask_dict["0.weight"] = mask.clone()
    masking._refresh()
    return masking, optimizer


def test_abs_grad_growth_picks_largest_gradients_among_inactive() -> None:
    mask = torch.tensor([[True, False, False], [False, True, False]])
    masking, _ = _masking_with_mask(torch.zeros(2, 3), mask)
    weight = masking.params["0.weight"]
    weight.grad = torch.tensor([[9.0, -0.5, 0.1], [-3.0, 8.0, 0.2]])
    grown = abs_grad_growth(masking, "0.weight", 2, weight)
    assert torch.equal(grown, torch.tensor([[True, True, False], [True, True, False]]))
    assert torch.equal(masking.mask_dict["0.weight"], mask), "the stored mask is not modified"


def test_growth_never_exceeds_inactive_count() -> None:
    mask = torch.tensor([[True, False], [True, True]])
    masking, _ = _masking_with_mask(torch.zeros(2, 2), mask)
    weight = masking.params["0.weight"]
    weight.grad = torch.ones(2, 2)
    assert bool(abs_grad_growth(masking, "0.weight", 10, weight).all())


def test_growth_with_all_zero_scores_still_grows_exactly() -> None:
    mask = torch.zeros(50, 50, dtype=torch.bool)
    masking, _ = _masking_with_mask(torch.zeros(50, 50), mask)
    weight = masking.params["0.weight"]
    weight.grad = torch.zeros(50, 50)
    assert int(abs_grad_growth(masking, "0.weight", 37, weight).sum()) == 37


def test_momentum_growth_uses_sgd_buffer() -> None:
    mask = torch.tensor([[True, False, False, False]])
    masking, optimizer = _masking_with_mask(torch.zeros(1, 4), mask)
    weight = masking.params["0.weight"]
    optimizer.state[weight]["momentum_buffer"] = torch.tensor([[5.0, 0.1, -2.0, 1.0]])
    grown = momentum_growth(masking, "0.weight", 2, weight)
    assert grown.tolist() == [[True, False, True, True]]


def test_momentum_growth_uses_adam_normalised_moment() -> None:
    model = linear_with(torch.zeros(1, 3))
    optimizer = torch.optim.Adam(model.parameters())
    from sparselearning.core import Masking

    masking = Masking(optimizer, density=1.0)
    masking.add_module(model)
    masking.mask_dict["0.weight"] = torch.tensor([[False, False, False]])
    masking._refresh()
    weight = masking.params["0.weight"]
    optimizer.state[weight]["exp_avg"] = torch.tensor([[1.0, 1.0, 0.5]])
    optimizer.state[weight]["exp_avg_sq"] = torch.tensor([[100.0, 1.0, 0.01]])
    # normalised: 0.1, 1.0, 5.0 (up to eps)
    assert momentum_growth(masking, "0.weight", 2, weight).tolist() == [[False, True, True]]


def test_momentum_growth_without_momentum_is_a_clear_error() -> None:
    mask = torch.tensor([[True, False]])
    masking, _ = _masking_with_mask(torch.zeros(1, 2), mask)
    with pytest.raises(SparseLearningError, match="momentum"):
        momentum_growth(masking, "0.weight", 1, masking.params["0.weight"])


def test_gradient_growth_before_backward_is_a_clear_error() -> None:
    masking, _ = _masking_with_mask(torch.zeros(1, 2), torch.tensor([[True, False]]))
    with pytest.raises(SparseLearningError, match="after loss.backward"):
        abs_grad_growth(masking, "0.weight", 1, masking.params["0.weight"])


def test_random_growth_exact_inactive_only_and_seeded() -> None:
    mask = torch.rand(40, 40, generator=torch.Generator().manual_seed(0)) < 0.3
    masking, _ = _masking_with_mask(torch.zeros(40, 40), mask)
    weight = masking.params["0.weight"]
    first = random_growth(masking, "0.weight", 100, weight)
    again = random_growth(masking, "0.weight", 100, weight)
    assert int(first.sum()) == int(mask.sum()) + 100
    assert bool(first[mask].all()), "active positions stay active"
    assert torch.equal(first, again), "same (seed, step, layer) -> same draw"
    masking.mask_step += 1
    assert not torch.equal(random_growth(masking, "0.weight", 100, weight), first)


def test_no_growth_returns_current_mask() -> None:
    mask = torch.tensor([[True, False]])
    masking, _ = _masking_with_mask(torch.zeros(1, 2), mask)
    assert torch.equal(no_growth(masking, "0.weight", 1, masking.params["0.weight"]), mask)


def test_struct_growth_adds_whole_kernels_by_criterion() -> None:
    conv = nn.Conv2d(1, 3, 2, bias=False)
    masking, _ = masking_for(nn.Sequential(conv), density=1.0)
    masking.mask_dict["0.weight"] = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    masking.mask_dict["0.weight"][0] = True
    masking._refresh()
    conv.weight.grad = torch.tensor(
        [[[[9.0, 9.0], [9.0, 9.0]]], [[[0.0, 0.0], [0.0, 8.0]]], [[[1.0, 1.0], [1.0, 1.0]]]]
    )  # kernel 1: mean 2, min 0; kernel 2: mean 1, min 1
    by_mean = struct_abs_grad_growth(masking, "0.weight", 4, conv.weight, criterion=torch.mean)
    assert by_mean.view(3, 4).all(dim=1).tolist() == [True, True, False]
    by_min = registry["struct-absolute-gradient-min"](masking, "0.weight", 4, conv.weight)
    assert by_min.view(3, 4).all(dim=1).tolist() == [True, False, True]


def test_growth_scores_are_the_same_whole_in_chunks_strided_or_at_positions() -> None:
    generator = torch.Generator().manual_seed(2)
    values = torch.randn(30, 40, generator=generator)
    original = values.clone()
    mask = torch.rand(30, 40, generator=generator) < 0.2
    expected = torch.where(mask, torch.tensor(-1.0), values.abs()).reshape(-1)
    scores_at = inactive_scores_at(mask, values)
    assert torch.equal(scores_at(slice(0, 1200)), expected)
    # Each answer is valid until the next call (its buffer is reused), so keep copies.
    assert torch.equal(torch.cat([scores_at(slice(s, s + 256)).clone() for s in range(0, 1200, 256)]), expected)
    assert torch.equal(scores_at(slice(3, 1200, 7)), expected[3::7])
    positions = torch.tensor([1199, 0, 517, 517])
    assert torch.equal(scores_at(positions), expected[positions])
    assert torch.equal(values, original), "scoring never writes to the gradient or momentum it reads"
