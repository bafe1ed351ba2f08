"""The per-step work that keeps masked weights, their gradients and their optimizer state at exactly zero.

Everything here runs on every training step, so it works on lists of tensors with fused `_foreach` kernels and
never allocates a weight-sized tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from sparselearning.masking.records import MaskedParameter
from sparselearning.masking.sharding import local
from sparselearning.ops.mask_chunks import multiply_by_bool_masks

# Optimizers that add L2 weight decay to the gradient (`g + wd * w`) before anything else.
_L2_GRADIENT_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop)


@contextlib.contextmanager
def weight_decay_in_place(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Add L2 weight decay to the gradients in place and hide it from the optimizer for one step.

    The optimizer would compute the very same `g + wd * w` into a freshly allocated tensor; doing it in place
    saves the allocation, which pays for masking the gradients. Only for optimizer classes known to apply
    decay this way, and never with `maximize` or decoupled decay.
    """
    groups = []
    if type(optimizer) in _L2_GRADIENT_OPTIMIZERS:
        for group in optimizer.param_groups:
            decay = group.get("weight_decay", 0.0)
            if decay and not group.get("maximize", False) and not group.get("decoupled_weight_decay", False):
                groups.append((group, decay))
    with torch.no_grad():
        for group, decay in groups:
            pairs = [(p.grad, p) for p in group["params"] if p.grad is not None and not p.grad.is_sparse]
            if pairs:
                torch._foreach_add_([g for g, _ in pairs], [p for _, p in pairs], alpha=decay)
            group["weight_decay"] = 0.0
    try:
        yield
    finally:
        for group, decay in groups:
            group["weight_decay"] = decay


def unscale_once(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> None:
    """`scaler.unscale_(optimizer)`, unless the caller already did (to clip gradients) this iteration."""
    try:
        scaler.unscale_(optimizer)
    except RuntimeError as error:
        if "already been called" not in str(error):
            raise


def gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one host sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True


@torch.no_grad()
def multiply_by_masks(tensors: Sequence[torch.Tensor], records: Sequence[MaskedParameter]) -> None:
    """Zero each tensor where its record's mask is inactive (float arithmetic on L2-sized chunks of the bool
    masks: the speed of a float-mask multiply without a float copy of the masks)."""
    if not tensors:
        return
    shards = [local(tensor) for tensor in tensors]  # a sharded (FSDP2) tensor: only this rank's rows
    multiply_by_bool_masks(shards, [record.local_mask() for record in records])


def weight_shaped_state(optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> list[torch.Tensor]:
    """Every floating optimizer state tensor shaped like `weight` (momentum, Adam's moments; any optimizer)."""
    return [
        value
        for value in optimizer.state.get(weight, {}).values()
        if isinstance(value, torch.Tensor) and value.shape == weight.shape and value.is_floating_point()
    ]


def as_ints(counts: list[torch.Tensor]) -> list[int]:
    """Python ints from 0-dim count tensors, with one host transfer per device instead of one per tensor."""
    if not counts:
        return []
    by_device: dict[torch.device, list[int]] = {}
    for index, count in enumerate(counts):
        by_device.setdefault(count.device, []).append(index)
    values = [0] * len(counts)
    for indices in by_device.values():
        for index, value in zip(indices, torch.stack([counts[i] for i in indices]).tolist(), strict=True):
            values[index] = int(value)
    return values
