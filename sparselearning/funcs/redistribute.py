"""Implements Redistribution function.

Modifies layer-wise sparsity during mask update.

Functions have access to the masking object enabling greater flexibility in designing custom redistribution
modes. Masking class implements the output redistribution in a valid manner, ensuring no weight exceeds its
capacity.

Signature: <func>(masking, name, weight, mask) -> float, an unnormalised per-layer statistic. Normalising
across layers gives the share of the freed budget each layer regrows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sparselearning.funcs._layers import gradient_of, momentum_of
from sparselearning.ops.mask_chunks import float_chunks

if TYPE_CHECKING:
    from sparselearning.masking.view import MaskingView as Masking


def _mean_abs_over_active(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |values| over the active positions of `mask`: dot products of |values| with the mask in floats, chunk
    by chunk (a bool-masked copy of the whole layer cost SNFS a third of its update; nothing weight-sized here)."""
    active = int(torch.count_nonzero(mask))
    if active == 0:
        return 0.0
    flat = values.detach().reshape(-1)
    magnitudes = torch.empty(0, dtype=flat.dtype, device=flat.device)  # one chunk's |values|, reused
    dots = []
    for floats, chunk in float_chunks(mask, flat, dtype=flat.dtype):
        if magnitudes.numel() < chunk.numel():
            magnitudes = torch.empty_like(chunk)
        dots.append(torch.dot(torch.abs(chunk, out=magnitudes[: chunk.numel()]), floats))
    return float(torch.stack(dots).sum()) / active


def momentum_redistribution(masking: Masking, name: str, weight: torch.Tensor, mask: torch.Tensor) -> float:
    """Calculates momentum redistribution statistics: mean |momentum| over the layer's active weights.

    :param masking: Masking instance
    :param name: layer name
    :param weight: layer weight
    :param mask: layer mask
    :return: unnormalized layer statistic for the layer
    """
    return _mean_abs_over_active(momentum_of(masking, weight), mask)


def grad_redistribution(masking: Masking, name: str, weight: torch.Tensor, mask: torch.Tensor) -> float:
    """Calculates gradient redistribution statistics: mean |grad| over the layer's active weights.

    :param masking: Masking instance
    :param name: layer name
    :param weight: layer weight
    :param mask: layer mask
    :return: unnormalized layer statistic for the layer
    """
    return _mean_abs_over_active(gradient_of(weight, name), mask)


def nonzero_redistribution(masking: Masking, name: str, weight: torch.Tensor, mask: torch.Tensor) -> float:
    """Calculates non-zero redistribution statistics: the layer's active count.

    Ideally, this just preserves the older distribution, upto numerical error. In practice `Masking` skips
    redistribution when this (or "none") is chosen and regrows in each layer what it pruned.

    :param masking: Masking instance
    :param name: layer name
    :param weight: layer weight
    :param mask: layer mask
    :return: unnormalized layer statistic for the layer
    """
    return float(torch.count_nonzero(mask))


registry: dict[str, Callable[..., float]] = {
    "momentum": momentum_redistribution,
    "grad": grad_redistribution,
    "nonzero": nonzero_redistribution,
    "none": nonzero_redistribution,
}

# Modes under which each layer regrows exactly what it pruned.
PRESERVING_MODES = frozenset({"nonzero", "none"})
