"""Views shared by the mask functions: kernels of a layer, scores over inactive positions, active indices."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sparselearning.errors import SparseLearningError

if TYPE_CHECKING:
    from sparselearning.masking.view import MaskingView as Masking


def active_indices(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the active (True) entries of a mask, ascending."""
    return torch.nonzero(mask.reshape(-1)).view(-1)


def kernel_view(tensor: torch.Tensor) -> torch.Tensor:
    """A layer as rows of kernels: (out * in, kernel elements). A Linear weight has 1-element kernels."""
    if tensor.dim() < 2:
        raise SparseLearningError(f"channel-wise sparsity needs a weight of 2 or more dims, got {tuple(tensor.shape)}")
    return tensor.reshape(tensor.shape[0] * tensor.shape[1], -1)


def kernel_mask(mask: torch.Tensor) -> torch.Tensor:
    """One bool per kernel: active when any of its weights is active."""
    return kernel_view(mask).any(dim=1)


def expand_kernel_mask(kernels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-kernel bool vector broadcast back to the full weight shape."""
    rows = kernel_view(like).shape[1]
    return kernels.view(-1, 1).expand(-1, rows).reshape(like.shape).clone()


def reduce_kernels(values: torch.Tensor, criterion: Callable[..., torch.Tensor]) -> torch.Tensor:
    """One statistic per kernel: `criterion(|values| as kernel rows, dim=-1)`."""
    reduced = criterion(kernel_view(values.detach()).abs(), dim=-1)
    return reduced if isinstance(reduced, torch.Tensor) else reduced.values


def inactive_scores(masking: Masking, name: str, values: torch.Tensor) -> torch.Tensor:
    """|values| at positions inactive in `masking.mask_dict[name]` and -1 at active ones, flat, in scratch space.

    Every score at an eligible position is >= 0, so active positions are never chosen while an eligible one
    remains. Computed with the float mask (x - x * 1 == 0 exactly), which is far faster than bool indexing.
    """
    active = masking.float_mask(name).reshape(-1)
    scores = masking.scratch(values.numel(), active.dtype, values.device)
    torch.abs(values.detach().reshape(-1), out=scores)
    scores.addcmul_(scores, active, value=-1.0)
    return scores.sub_(active)


def gradient_of(weight: torch.Tensor, name: str) -> torch.Tensor:
    """The weight's gradient, or a clear error when growth is asked for before any backward pass."""
    if weight.grad is None:
        raise SparseLearningError(
            f"layer {name!r} has no gradient: call update_connections() after loss.backward(), not before"
        )
    return weight.grad


def momentum_of(masking: Masking, weight: torch.Tensor) -> torch.Tensor:
    """The optimizer's momentum-like state for a weight (see `Masking.get_momentum_for_weight`)."""
    return masking.get_momentum_for_weight(weight)
