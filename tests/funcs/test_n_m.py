"""N:M rules: the mask keeps exactly n of every m consecutive inputs by |w| (ties to the earlier position), the
sparse-refined term touches masked-out positions only, and bad patterns or layers are refused in one line."""

from __future__ import annotations

import pytest
import torch

from sparselearning.errors import SparseLearningError
from sparselearning.export.semi_structured import nm_mask as export_nm_mask
from sparselearning.funcs.n_m import (
    add_sparse_refined_term_,
    check_layer,
    check_n_m,
    group_counts,
    is_exactly_n_m,
    nm_density,
    nm_mask,
)


def test_keeps_the_n_largest_magnitudes_of_every_group() -> None:
    weight = torch.tensor([[0.1, -0.9, 0.3, 0.2, 5.0, -6.0, 7.0, 0.0]])
    assert nm_mask(weight, 2, 4).tolist() == [[False, True, True, False, False, True, True, False]]
    assert nm_mask(weight, 1, 4).tolist() == [[False, True, False, False, False, False, True, False]]
    assert nm_mask(weight, 3, 4).tolist() == [[False, True, True, True, True, True, True, False]]
    assert nm_mask(weight, 4, 4).all()


def test_ties_keep_the_earlier_position() -> None:
    weight = torch.tensor([[1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [2.0, 1.0, -2.0, 2.0]])
    assert nm_mask(weight, 2, 4).tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [True, False, True, False],
    ]


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (3, 8), (1, 2)])
def test_every_group_of_a_random_weight_holds_exactly_n(n: int, m: int) -> None:
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(n * 10 + m))
    mask = nm_mask(weight, n, m)
    assert is_exactly_n_m(mask, n, m)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    # Kept magnitudes are at least every dropped magnitude of the same group.
    groups = weight.abs().reshape(-1, m)
    kept = mask.reshape(-1, m)
    smallest_kept = groups.masked_fill(~kept, float("inf")).amin(dim=1)
    largest_dropped = groups.masked_fill(kept, -1.0).amax(dim=1)
    assert bool((smallest_kept >= largest_dropped).all())


def test_agrees_with_the_export_helper_on_2_4() -> None:
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(3))
    weight[0, :4] = 1.0  # a tie
    assert torch.equal(nm_mask(weight, 2, 4), export_nm_mask(weight, 2, 4))


def test_a_convolution_groups_along_its_flattened_in_channels_kh_kw() -> None:
    weight = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))  # fan-in 8
    mask = nm_mask(weight, 2, 4)
    assert torch.equal(mask.reshape(3, 8), nm_mask(weight.reshape(3, 8), 2, 4))
    assert group_counts(mask, 4).tolist() == [[2, 2]] * 3


def test_a_channels_last_weight_gives_the_same_mask() -> None:
    weight = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(nm_mask(weight.to(memory_format=torch.channels_last), 2, 4), nm_mask(weight, 2, 4))


def test_is_exactly_n_m_counts_every_group() -> None:
    weight = torch.tensor([[1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    assert is_exactly_n_m(weight, 2, 4)
    weight[0, 5] = 0.0
    assert not is_exactly_n_m(weight, 2, 4)


@pytest.mark.parametrize(("n", "m"), [(0, 4), (5, 4), (-1, 4), (2, 0), (2.0, 4), (True, 4), (2, "4")])
def test_bad_patterns_are_refused(n: object, m: object) -> None:
    with pytest.raises(SparseLearningError, match=r"is not an N:M pattern; allowed: whole numbers with 1 <= n <= m"):
        check_n_m(n, m)


def test_density_is_n_over_m_and_a_conflicting_one_is_refused() -> None:
    assert nm_density(2, 4) == 0.5 and nm_density(1, 4) == 0.25 and nm_density(2, 4, 0.5) == 0.5
    with pytest.raises(SparseLearningError, match=r"masking.density=0.1 conflicts with 2:4 sparsity, whose density"):
        nm_density(2, 4, 0.1, "masking.")


def test_a_fan_in_that_m_does_not_divide_is_refused() -> None:
    with pytest.raises(SparseLearningError, match=r"layer 'conv1.weight' has fan-in 9, not a multiple of m=4"):
        check_layer("conv1.weight", torch.zeros(16, 1, 3, 3), 4)
    with pytest.raises(SparseLearningError, match=r"needs a weight of 2 or more dims"):
        check_layer("bias", torch.zeros(8), 4)
    with pytest.raises(SparseLearningError, match="fan-in 6"):
        nm_mask(torch.zeros(2, 6), 2, 4)


def test_the_sparse_refined_term_is_added_at_masked_out_positions_only() -> None:
    dense = torch.tensor([[0.5, -2.0, 3.0, 0.25]])
    mask = nm_mask(dense, 2, 4)  # keeps -2.0 and 3.0
    grad = torch.tensor([[0.1, 0.2, -0.3, 0.4]])
    expected = grad + 0.01 * (~mask) * dense
    add_sparse_refined_term_(grad, dense, dense * mask, 0.01)
    assert torch.equal(grad, expected)
    assert grad[0, 1] == 0.2 and grad[0, 2] == -0.3  # kept positions untouched, bit for bit
    unchanged = grad.clone()
    add_sparse_refined_term_(grad, dense, dense * mask, 0.0)
    assert torch.equal(grad, unchanged)
