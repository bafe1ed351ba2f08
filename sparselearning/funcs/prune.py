"""Implements Pruning function.

Modifies binary mask to prevent gradient flow.

Functions have access to the masking object enabling greater flexibility in designing custom prune modes.

Signature: <func>(masking, mask, weight, name) -> pruned bool mask. The number removed from a layer is
`ceil(masking.name2prune_rate[name] * masking.stats.nonzeros_dict[name])`, taken among active weights only.
`global_magnitude_prune(masking)` is the exception: it prunes all layers at once and returns the count.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from sparselearning.funcs._layers import active_indices, expand_kernel_mask, kernel_mask, reduce_kernels
from sparselearning.funcs.fan_in import srigl_prune, srigl_prune_no_ablation
from sparselearning.ops.select import bottomk_indices

if TYPE_CHECKING:
    from sparselearning.masking.view import MaskingView as Masking


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


def _global_removal_count(masking: Masking, total_nonzero: int, total_active: int) -> int:
    """How many weights one global prune removes: down to the schedule's exact count when the decay gives
    one (gradual pruning's `target_nonzero`), else `round(prune_rate * total_params)`; never more than
    are active."""
    decay = masking.prune_rate_decay
    target_nonzero = getattr(decay, "target_nonzero", None)
    if getattr(decay, "mode", "current") == "cumulative" and callable(target_nonzero):
        count = total_nonzero - int(target_nonzero(masking.total_params))
    else:
        count = round(masking.prune_rate * masking.total_params)
    return max(0, min(total_active, count))


def global_magnitude_prune(masking: Masking) -> int:
    """Global Magnitude (L1) pruning. Modifies in-place.

    Removes the smallest |w| among the active weights of every prunable layer, as if by one global threshold
    but by exact count (k-th smallest over the active weights, never a comparison with a threshold, so ties
    cannot make it miss; ties go towards lower indices). The count: with a cumulative decay that gives an
    exact target (`MagnitudePruneDecay.target_nonzero`), what brings the network's active weights down to
    that target; else `round(masking.prune_rate * masking.total_params)`.

    :param masking: Masking instance
    :return: number of weights removed
    """
    stats = masking.stats  # read once: the masks change below
    names = masking.prunable_names()
    total_active = sum(stats.nonzeros_dict[name] for name in names)
    count = _global_removal_count(masking, stats.total_nonzero, total_active)
    stats.removed_dict = dict.fromkeys(masking.mask_dict, 0)
    if count <= 0:
        return 0
    actives = [active_indices(masking.mask_dict[name]) for name in names]
    # one dtype that holds every layer's magnitudes exactly (at least float32)
    dtype = functools.reduce(torch.promote_types, (masking.params[name].dtype for name in names), torch.float32)
    magnitudes = torch.cat(
        [
            masking.params[name].detach().reshape(-1).take(idx).abs().to(dtype)
            for name, idx in zip(names, actives, strict=True)
        ]
    )
    chosen = bottomk_indices(magnitudes, count)
    offset = 0
    for name, idx in zip(names, actives, strict=True):
        upper = offset + idx.numel()
        local = chosen[(chosen >= offset) & (chosen < upper)] - offset
        masking.mask_dict[name].view(-1).index_fill_(0, idx.take(local), False)
        stats.removed_dict[name] = local.numel()
        offset = upper
    return count


def struct_magnitude_prune(
    masking: Masking,
    mask: torch.Tensor,
    weight: torch.Tensor,
    name: str,
    criterion: Callable[..., torch.Tensor] = torch.mean,
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


registry: dict[str, Callable[..., Any]] = {
    "magnitude": magnitude_prune,
    "global-magnitude": global_magnitude_prune,
    "struct-magnitude-mean": partial(struct_magnitude_prune, criterion=torch.mean),
    "struct-magnitude-max": partial(struct_magnitude_prune, criterion=torch.amax),
    "srigl": srigl_prune,
    "srigl-no-ablation": srigl_prune_no_ablation,
}

# Prune modes that act on all layers at once (signature `(masking) -> int`).
GLOBAL_MODES = frozenset({"global-magnitude"})
