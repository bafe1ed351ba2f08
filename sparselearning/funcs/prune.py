"""Implements Pruning function.

Modifies binary mask to prevent gradient flow.

Functions have access to the masking object enabling greater flexibility in designing custom prune modes.

Signature: <func>(masking, mask, weight, name) -> pruned bool mask. The number removed from a layer is
`ceil(masking.name2prune_rate[name] * masking.stats.nonzeros_dict[name])`, taken among active weights only.
`global_magnitude_prune(masking)` is the exception: it prunes all layers at once and returns the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch

from sparselearning.funcs._layers import active_indices, expand_kernel_mask, kernel_mask, reduce_kernels
from sparselearning.ops.select import bottomk_indices

if TYPE_CHECKING:
    from sparselearning.core import Masking


def _removal_count(masking: Masking, name: str, active: int) -> int:
    return min(active, math.ceil(masking.name2prune_rate.get(name, 0.0) * active))


def magnitude_prune(masking: Masking, mask: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
    """Prunes the weights with smallest magnitude.

    :param masking: Masking instance
    :param mask: layer mask
    :param weight: layer weight
    :param name: layer name
    :return: pruned mask
    """
    active = active_indices(mask)
    count = _removal_count(masking, name, active.numel())
    if count == 0:
        return mask
    magnitudes = weight.detach().reshape(-1).take(active).abs()
    dropped = active.take(bottomk_indices(magnitudes, count))
    pruned = mask.clone()
    pruned.view(-1).index_fill_(0, dropped, False)
    return pruned


def global_magnitude_prune(masking: Masking) -> int:
    """Global Magnitude (L1) pruning. Modifies in-place.

    Removes `round(masking.prune_rate * masking.total_params)` weights, the smallest |w| among the active
    weights of every prunable layer, as if by one global threshold (exact count; ties towards lower indices).

    :param masking: Masking instance
    :return: number of weights removed
    """
    names = masking.prunable_names()
    total_active = sum(masking.stats.nonzeros_dict[name] for name in names)
    count = min(total_active, round(masking.prune_rate * masking.total_params))
    masking.stats.removed_dict = dict.fromkeys(masking.mask_dict, 0)
    if count <= 0:
        return 0
    actives = [active_indices(masking.mask_dict[name]) for name in names]
    magnitudes = torch.cat(
        [
            masking.params[name].detach().reshape(-1).take(idx).abs().float()
            for name, idx in zip(names, actives, strict=False)
        ]
    )
    chosen = bottomk_indices(magnitudes, count)
    offset = 0
    for name, idx in zip(names, actives, strict=False):
        upper = offset + idx.numel()
        local = chosen[(chosen >= offset) & (chosen < upper)] - offset
        masking.mask_dict[name].view(-1).index_fill_(0, idx.take(local), False)
        masking.stats.removed_dict[name] = local.numel()
        offset = upper
    return count


def struct_magnitude_prune(
    masking: Masking,
    mask: torch.Tensor,
    weight: torch.Tensor,
    name: str,
    criterion: Callable = torch.mean,
) -> torch.Tensor:
    """Prunes the weights channel-wise, with reduced smallest magnitude.

    Each kernel (one input channel of one output channel) is reduced to `criterion(|w|)`; the kernels with
    the smallest statistic among active kernels are removed whole.

    :param masking: Masking instance
    :param mask: layer mask
    :param weight: layer weight
    :param name: layer name
    :param criterion: determines reduction function (reduces a kernel to a single statistic, eg: mean/max).
    :return: pruned mask
    """
    kernels = kernel_mask(mask)
    active = active_indices(kernels)
    count = _removal_count(masking, name, active.numel())
    if count == 0:
        return mask
    statistic = reduce_kernels(weight, criterion).take(active)
    kernels = kernels.clone()
    kernels.index_fill_(0, active.take(bottomk_indices(statistic, count)), False)
    return expand_kernel_mask(kernels, mask)


registry: dict[str, Callable] = {
    "magnitude": magnitude_prune,
    "global-magnitude": global_magnitude_prune,
    "struct-magnitude-mean": partial(struct_magnitude_prune, criterion=torch.mean),
    "struct-magnitude-max": partial(struct_magnitude_prune, criterion=torch.amax),
}

# Prune modes that act on all layers at once (signature `(masking) -> int`).
GLOBAL_MODES = frozenset({"global-magnitude"})
