"""Bool masks in float arithmetic chunk by chunk: groups hold only small tensors, and the results are exactly
those of multiplying by a float copy of the mask, for small and split tensors, other dtypes, and the fallbacks."""

from __future__ import annotations

import pytest
import torch

from sparselearning.ops.mask_chunks import float_chunks, group_small, mask_bytes, multiply_by_bool_masks


def test_small_tensors_share_groups_of_at_most_a_chunk_and_large_ones_are_left_out() -> None:
    assert group_small([3, 2, 7, 1, 4, 0, 9], chunk=8) == [[0, 1], [2, 3], [4]]
    assert group_small([1, 1, 1, 5], chunk=4) == [[0, 1, 2]]
    assert group_small([4, 8], chunk=4) == []
    assert group_small([], chunk=4) == []


@pytest.mark.parametrize("sizes", [[(5, 7)], [(3,), (40, 9), (1, 1), (6, 2, 3)], [(64, 64)]])
@pytest.mark.parametrize("chunk", [1, 10, 1 << 18])
def test_multiply_equals_multiplying_by_float_masks(sizes: list[tuple[int, ...]], chunk: int) -> None:
    generator = torch.Generator().manual_seed(len(sizes) + chunk)
    tensors = [torch.randn(size, generator=generator) for size in sizes]
    masks = [torch.rand(size, generator=generator) < 0.3 for size in sizes]
    expected = [tensor * mask.float() for tensor, mask in zip(tensors, masks, strict=True)]
    multiply_by_bool_masks(tensors, masks, chunk=chunk)
    for tensor, mask, want in zip(tensors, masks, expected, strict=True):
        assert torch.equal(tensor, want)
        assert int(torch.count_nonzero(tensor[~mask])) == 0


def test_multiply_handles_mixed_dtypes_and_non_contiguous_tensors() -> None:
    generator = torch.Generator().manual_seed(3)
    half = torch.randn(9, 11, generator=generator).to(torch.bfloat16)
    double = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    strided = torch.randn(6, 8, generator=generator).t()  # not contiguous: multiplied directly
    tensors = [half, double, strided]
    masks = [torch.rand(t.shape, generator=generator) < 0.5 for t in tensors]
    expected = [t * m.to(t.dtype) for t, m in zip(tensors, masks, strict=True)]
    multiply_by_bool_masks(tensors, masks, chunk=16)
    assert [t.dtype for t in tensors] == [torch.bfloat16, torch.float64, torch.float32]
    assert all(torch.equal(t, want) for t, want in zip(tensors, expected, strict=True))
    assert not strided.is_contiguous()


def test_float_chunks_walk_the_mask_and_write_through_to_the_tensors() -> None:
    mask = torch.tensor([[True, False, True], [False, False, True], [True, True, False]])
    values = torch.arange(1.0, 10.0)
    seen = []
    for floats, chunk in float_chunks(mask, values, chunk=4):
        seen.append(floats.tolist())
        chunk.mul_(floats)
    assert seen == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0], [0.0]]
    assert values.tolist() == [1.0, 0.0, 3.0, 0.0, 0.0, 6.0, 7.0, 8.0, 0.0]


def test_float_chunks_take_the_dtype_asked_for_and_refuse_tensors_that_do_not_match() -> None:
    mask = torch.ones(2, 3, dtype=torch.bool)
    (floats, chunk), *_ = float_chunks(mask, torch.zeros(6, dtype=torch.float64), dtype=torch.float64)
    assert floats.dtype == torch.float64 and chunk.numel() == 6
    with pytest.raises(ValueError, match="flat tensors of 6 entries, got shape \\(2, 3\\)"):
        next(float_chunks(mask, torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="got shape \\(5,\\)"):
        next(float_chunks(mask, torch.zeros(5)))


def test_masks_of_other_dtypes_count_nonzero_as_active() -> None:
    as_floats = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert mask_bytes(as_floats).tolist() == [1, 0, 0, 1]
    values = torch.tensor([5.0, 6.0, 7.0, 8.0])
    assert [floats.tolist() for floats, _ in float_chunks(as_floats, values)] == [[1.0, 0.0, 0.0, 1.0]]
    bools = torch.tensor([True, False, True])
    assert mask_bytes(bools).data_ptr() == bools.data_ptr(), "a bool mask is read in place, not copied"
