"""Masks on disk in one bit per weight: what a finished run keeps in `final_masks.pt`.

A boolean tensor costs a byte per weight in a `torch.save` file; packing eight positions into each byte makes
a run's final masks eight times smaller, which matters for results committed by the hundred. The packed form
is plain tensors (loadable with `weights_only=True`) and is checked field by field when read back, so a
damaged or hostile file is one error line and can never ask for more memory than it stores.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sparselearning.errors import SparseLearningError
from sparselearning.ops.bits import pack_bits, unpack_bits

PACKED_KEY = "packed_masks"
FORMAT = "bits-v1"


def pack(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One boolean mask as its shape and its positions packed eight to a byte (first position = high bit)."""
    bits = pack_bits(mask.detach().to("cpu", torch.bool))
    return {"shape": torch.tensor(list(mask.shape), dtype=torch.int64), "bits": bits}


def unpack(entry: Any, what: str) -> torch.Tensor:
    """The boolean mask of one packed entry, after checking its fields against each other."""
    if not isinstance(entry, dict) or set(entry) != {"shape", "bits"}:
        raise SparseLearningError(f"{what}: a packed mask must hold exactly 'shape' and 'bits'")
    shape, bits = entry["shape"], entry["bits"]
    if not (isinstance(shape, torch.Tensor) and shape.dtype == torch.int64 and shape.dim() == 1):
        raise SparseLearningError(f"{what}: 'shape' must be a 1-D int64 tensor")
    if not (isinstance(bits, torch.Tensor) and bits.dtype == torch.uint8 and bits.dim() == 1):
        raise SparseLearningError(f"{what}: 'bits' must be a 1-D uint8 tensor")
    sizes = [int(size) for size in shape.tolist()]
    if any(size < 0 for size in sizes):
        raise SparseLearningError(f"{what}: 'shape' {sizes} has a negative size")
    count = math.prod(sizes)
    if math.ceil(count / 8) != bits.numel():
        raise SparseLearningError(
            f"{what}: 'shape' {sizes} needs {math.ceil(count / 8)} bytes of bits, the file holds {bits.numel()}"
        )
    positions = unpack_bits(bits, bits.numel() * 8)
    if bool(positions[count:].any()):
        raise SparseLearningError(f"{what}: the padding bits after the last position are not zero")
    return positions[:count].reshape(sizes).clone()


def pack_masks(masks: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A `final_masks.pt` payload: every mask packed, with the format's name."""
    return {"format": FORMAT, PACKED_KEY: {name: pack(mask) for name, mask in masks.items()}}


def unpack_masks(payload: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    """The masks of a payload written by `pack_masks`."""
    if payload.get("format") != FORMAT:
        raise SparseLearningError(f"{what}: unknown mask format {payload.get('format')!r}; expected {FORMAT!r}")
    packed = payload.get(PACKED_KEY)
    if not isinstance(packed, dict) or not all(isinstance(name, str) for name in packed):
        raise SparseLearningError(f"{what}: {PACKED_KEY!r} must map layer names to packed masks")
    return {name: unpack(entry, f"{what}, mask {name!r}") for name, entry in packed.items()}
