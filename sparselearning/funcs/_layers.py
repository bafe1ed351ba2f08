"""Views shared by the mask functions: kernels of a layer, scores over inactive positions, active indices."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sparselearning.errors import SparseLearningError
from sparselearning.ops.mask_chunks import mask_bytes
from sparselearning.ops.select import ScoresAt

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


def inactive_scores_at(mask: torch.Tensor, values: torch.Tensor) -> ScoresAt:
    """Growth scores on demand (for `topk_of_scores`): |values| at positions inactive in `mask` and -1 at active
    ones, at any slice or index positions of the flattened layer.

    Every score at an eligible position is >= 0, so active positions are never chosen while an eligible one
    remains. Computed with the mask in floats (x - x * 1 == 0 exactly), which is far faster than bool indexing,
    and only where asked: no weight-sized score buffer.
    """
    flat = values.detach().reshape(-1)
    active = mask_bytes(mask)
    buffers: list[torch.Tensor] = []  # scores and mask floats of the last chunk, reused: no allocation per chunk

    def scores_at(where: slice | torch.Tensor) -> torch.Tensor:
        if isinstance(where, torch.Tensor):
            scores, floats = flat.take(where).abs_(), active.take(where).to(flat.dtype)
        else:
            values_part, active_part = flat[where], active[where]
            count = values_part.numel()
            if not buffers or buffers[0].numel() < count:
                buffers[:] = [torch.empty(count, dtype=flat.dtype, device=flat.device) for _ in range(2)]
            scores = torch.abs(values_part, out=buffers[0][:count])
            floats = buffers[1][:count].copy_(active_part)
        return scores.addcmul_(scores, floats, value=-1.0).sub_(floats)

    return scores_at


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
