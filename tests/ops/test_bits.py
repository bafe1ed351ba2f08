"""Bits packed eight to a byte: exact round trips at every length, the padding left zero, counts without
unpacking."""

from __future__ import annotations

import pytest
import torch

from sparselearning.ops.bits import count_bits, pack_bits, unpack_bits


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 64, 1001])
def test_round_trip_at_every_length(count: int) -> None:
    mask = torch.rand(count, generator=torch.Generator().manual_seed(count)) < 0.3
    bits = pack_bits(mask)
    assert bits.dtype == torch.uint8 and bits.numel() == (count + 7) // 8
    assert torch.equal(unpack_bits(bits, count), mask)
    assert count_bits(bits) == int(mask.sum())
    assert not bool(unpack_bits(bits, bits.numel() * 8)[count:].any()), "padding bits stay zero"


def test_first_position_is_the_high_bit_and_shapes_flatten() -> None:
    mask = torch.tensor([[True, False, False, False], [False, False, False, True], [True, True, False, False]])
    assert pack_bits(mask).tolist() == [0b10000001, 0b11000000]
    assert torch.equal(unpack_bits(pack_bits(mask), 12).view(3, 4), mask)


def test_or_of_packed_records_is_the_packed_union() -> None:
    first, second = torch.rand(100) < 0.2, torch.rand(100) < 0.2
    union = pack_bits(first).bitwise_or_(pack_bits(second))
    assert torch.equal(unpack_bits(union, 100), first | second)


def test_a_mask_that_starts_inside_a_word_packs_the_same() -> None:
    storage = torch.rand(1 + 8 * 50, generator=torch.Generator().manual_seed(4)) < 0.5
    shifted = storage[1:]  # its bytes start one past an 8-byte boundary: no int64 view of them
    assert shifted.storage_offset() == 1
    assert torch.equal(pack_bits(shifted), pack_bits(shifted.clone()))
    assert torch.equal(unpack_bits(pack_bits(shifted), 400), shifted)
