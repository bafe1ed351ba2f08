"""Implements Growth function.

Modifies binary mask to enable gradient flow. New weights by default 0 and it can be changed in the function.

Functions have access to the masking object enabling greater flexibility in designing custom growth modes.

Signature: <func>(masking, name, total_regrowth, weight) -> new bool mask. The mask to grow into is
`masking.mask_dict[name]`, already pruned by this update, so a weight dropped a moment ago may come back.
Exactly `total_regrowth` positions are added (fewer only when fewer are inactive).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch

from sparselearning.funcs._layers import (
    active_indices,
    expand_kernel_mask,
    gradient_of,
    inactive_scores_at,
    kernel_mask,
    momentum_of,
    reduce_kernels,
)
from sparselearning.funcs.fan_in import srigl_growth
from sparselearning.ops.select import sample_indices, topk_indices, topk_of_scores

if TYPE_CHECKING:
    from sparselearning.masking.view import MaskingView as Masking

GROWTH_STREAM = 1  # purpose key of the random stream used by random growth


def _grow_top_scores(masking: Masking, name: str, total_regrowth: int, values: torch.Tensor) -> torch.Tensor:
    mask = masking.mask_dict[name]
    inactive = mask.numel() - int(torch.count_nonzero(mask))
    count = min(int(total_regrowth), inactive)
    if count <= 0:
        return mask
    grown = topk_of_scores(inactive_scores_at(mask, values), mask, count)
    masking.record_growth(name, grown)
    new_mask = mask.clone()
    new_mask.view(-1).index_fill_(0, grown, True)
    return new_mask


def abs_grad_growth(masking: Masking, name: str, total_regrowth: int, weight: torch.Tensor) -> torch.Tensor:
    """Grows weights in places where the abs(grad) is largest (among present zero'ed weights).

    :param masking: Masking instance
    :param name: layer name
    :param total_regrowth: amount to re-grow
    :param weight: layer weight
    :return: new boolean mask
    """
    return _grow_top_scores(masking, name, total_regrowth, gradient_of(weight, name))


def momentum_growth(masking: Masking, name: str, total_regrowth: int, weight: torch.Tensor) -> torch.Tensor:
    """Grows weights in places where the momentum is largest.

    :param masking: Masking instance
    :param name: layer name
    :param total_regrowth: amount to re-grow
    :param weight: layer weight
    :return: new boolean mask
    """
    return _grow_top_scores(masking, name, total_regrowth, momentum_of(masking, weight))


def random_growth(masking: Masking, name: str, total_regrowth: int, weight: torch.Tensor) -> torch.Tensor:
    """Random growth: exactly `total_regrowth` positions drawn uniformly among the inactive ones.

    The draw comes from the masking's generator for (seed, step, layer): the same on every process.

    :param masking: Masking instance
    :param name: layer name
    :param total_regrowth: amount to re-grow
    :param weight: layer weight
    :return: new boolean mask
    """
    mask = masking.mask_dict[name]
    grown = sample_indices(~mask, int(total_regrowth), masking.generator(name, GROWTH_STREAM))
    if grown.numel() == 0:
        return mask
    masking.record_growth(name, grown)
    new_mask = mask.clone()
    new_mask.view(-1).index_fill_(0, grown, True)
    return new_mask


def no_growth(masking: Masking, name: str, total_regrowth: int, weight: torch.Tensor) -> torch.Tensor:
    """No growth: the mask stays as pruned.

    :param masking: Masking instance
    :param name: layer name
    :param total_regrowth: amount to re-grow (ignored)
    :param weight: layer weight
    :return: the unchanged boolean mask
    """
    return masking.mask_dict[name]


def struct_abs_grad_growth(
    masking: Masking,
    name: str,
    total_regrowth: int,
    weight: torch.Tensor,
    criterion: Callable[..., torch.Tensor] = torch.mean,
) -> torch.Tensor:
    """Performs absolute gradient growth channel-wise.

    Kernels are ranked by `criterion(|grad|)` over their elements; `total_regrowth // kernel size` whole
    inactive kernels are grown.

    :param masking: Masking instance
    :param name: layer name
    :param total_regrowth: amount to re-grow (in weights)
    :param weight: layer weight
    :param criterion: callable to perform reduction
    :return: new boolean mask
    """
    mask = masking.mask_dict[name]
    kernels = kernel_mask(mask)
    kernel_size = mask.numel() // kernels.numel()
    count = min(int(total_regrowth) // kernel_size, kernels.numel() - int(torch.count_nonzero(kernels)))
    if count <= 0:
        return mask
    scores = reduce_kernels(gradient_of(weight, name), criterion).clone()
    scores.index_fill_(0, active_indices(kernels), -1.0)
    kernels = kernels.clone()
    kernels.index_fill_(0, topk_indices(scores, count), True)
    return expand_kernel_mask(kernels, mask)


registry: dict[str, Callable[..., torch.Tensor]] = {
    "absolute-gradient": abs_grad_growth,
    "momentum": momentum_growth,
    "random": random_growth,
    "none": no_growth,
    "struct-absolute-gradient-mean": partial(struct_abs_grad_growth, criterion=torch.mean),
    "struct-absolute-gradient-min": partial(struct_abs_grad_growth, criterion=torch.amin),
    "srigl": srigl_growth,
}
