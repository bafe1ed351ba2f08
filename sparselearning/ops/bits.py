"""Boolean tensors packed eight positions to a byte, first position in the high bit: what keeps a record of one
bit per weight (the ever-active record while training, a finished run's final masks on disk) at an eighth of a
bool tensor's size."""

from __future__ import annotations

import math
import sys

import torch

_PLACES = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
# 0x8040201008040201 as a signed int64: the sum of 2**(63 - 9 * i) for the bytes i = 0..7 of a word.
_GATHER = 0x8040201008040201 - (1 << 64)
# How many bits are set in each byte value.
_POPCOUNT = torch.tensor([bin(value).count("1") for value in range(256)], dtype=torch.int64)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """`mask`'s positions (flattened) packed into `ceil(numel / 8)` uint8 values on its device; the padding
    bits after the last position are zero."""
    flat = mask.detach().reshape(-1)
    if flat.dtype != torch.bool:
        flat = flat.to(torch.bool)
    count = flat.numel()
    padding = math.ceil(count / 8) * 8 - count
    if padding:
        flat = torch.cat([flat, flat.new_zeros(padding)])
    if sys.byteorder != "little" or flat.storage_offset() % 8:  # no int64 view of these bytes
        places = _PLACES.to(flat.device)
        return (flat.view(torch.uint8).view(-1, 8) * places).sum(dim=1, dtype=torch.uint8)
    # Eight 0/1 bytes read as one little-endian int64 word: multiplying by _GATHER moves byte i's bit to bit 63 - i
    # with no carries between the terms, so the top byte of the product is the packed byte (first position high).
    # Three passes over an eighth of the entries instead of a multiply and a sum over all of them.
    words = flat.view(torch.uint8).view(torch.int64)
    return words.mul(_GATHER).bitwise_right_shift_(56).bitwise_and_(0xFF).to(torch.uint8)


def unpack_bits(bits: torch.Tensor, count: int) -> torch.Tensor:
    """The first `count` positions of packed `bits`, as a flat bool tensor on their device."""
    return (bits.unsqueeze(1) & _PLACES.to(bits.device)).ne(0).reshape(-1)[:count]


def count_bits(bits: torch.Tensor) -> int:
    """How many positions of packed `bits` are set."""
    return int(_POPCOUNT.to(bits.device)[bits.long()].sum())
