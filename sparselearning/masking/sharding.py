"""Masks for parameters sharded by FSDP2 (`torch.distributed.fsdp.fully_shard`), whose weights are DTensors.

Every rank keeps each mask whole (bool, one byte per weight of the full layer), so initial masks, drops and
regrowth are decided on the whole layer exactly as in one process, and identically on every rank. The per-step
work touches only this rank's shard: the parameter, its gradient and its optimizer state are multiplied by the
matching rows of the mask. A mask update, the initial masks and a restore see whole tensors: `gathered()` puts
full copies of the weights, their gradients and their optimizer state in place for its duration (one all-gather
each), and writes this rank's rows of what changed back into the shards afterwards.

FSDP2's own layout is supported: one mesh dimension, the parameter sharded on its first dimension (`Shard(0)`)
in `torch.chunk` pieces. Anything else (HSDP's two-dimensional meshes, tensor parallelism) is refused in one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from sparselearning.errors import SparseLearningError

if TYPE_CHECKING:
    from sparselearning.masking.records import MaskedParameter

try:
    from torch.distributed.tensor import DTensor, Shard
except ImportError:  # pragma: no cover - torch built without distributed support
    DTensor = None  # type: ignore[assignment,misc]
    Shard = None  # type: ignore[assignment,misc]


def is_sharded(tensor: Any) -> bool:
    """Whether `tensor` is a DTensor (a parameter, gradient or optimizer state of an FSDP2 module)."""
    return DTensor is not None and isinstance(tensor, DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (a view sharing its storage), or the tensor itself."""
    return cast(Any, tensor).to_local() if is_sharded(tensor) else tensor


@dataclass(frozen=True)
class ShardRows:
    """The rows `[start, start + length)` of a whole weight that this rank holds."""

    start: int
    length: int

    def of(self, whole: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a whole tensor (a view)."""
        return whole.narrow(0, self.start, self.length)


def shard_rows(name: str, weight: torch.Tensor) -> ShardRows | None:
    """The rows of `weight` this rank holds, or None when it is not sharded; other layouts are refused."""
    if not is_sharded(weight):
        return None
    parameter = cast(Any, weight)  # a DTensor
    placements = tuple(parameter.placements)
    if parameter.device_mesh.ndim != 1 or len(placements) != 1 or placements[0] != Shard(0):
        raise SparseLearningError(
            f"{name} is a DTensor placed {placements} on a {parameter.device_mesh.ndim}-D mesh; masks support "
            "FSDP2's layout only (Shard(0) on one mesh dimension)"
        )
    rows, pieces = parameter.shape[0], parameter.device_mesh.size()
    piece = -(-rows // pieces)  # torch.chunk's piece size
    start = min(parameter.device_mesh.get_local_rank() * piece, rows)
    length = max(0, min(piece, rows - start))
    if parameter.to_local().shape[0] != length:
        raise SparseLearningError(f"{name}: its shard holds {parameter.to_local().shape[0]} rows, expected {length}")
    return ShardRows(start, length)


def _whole(tensor: Any) -> Any:
    return tensor.full_tensor() if is_sharded(tensor) else tensor


@dataclass
class _Swap:
    record: MaskedParameter
    sharded: nn.Parameter
    rows: ShardRows
    state: dict[str, torch.Tensor]


@contextlib.contextmanager
def gathered(
    records: Sequence[MaskedParameter], optimizer: torch.optim.Optimizer, weights: dict[str, nn.Parameter]
) -> Iterator[None]:
    """Whole tensors in place of sharded ones, for a mask update, the initial masks or a restore.

    Each sharded record's parameter becomes a full copy (its `.grad` the full gradient) with full copies of its
    optimizer state; `weights` (every weight of the model, for the nonzero count) shows full copies too. On
    exit, this rank's rows of the weights and the optimizer state are written back into the shards, and the
    records hold the sharded parameters again. Gradients are not written back: updates only read them.
    """
    swaps: list[_Swap] = []
    originals = dict(weights)
    try:
        for record in records:
            if record.shard is None:
                continue
            sharded = record.parameter
            whole = nn.Parameter(_whole(sharded.detach()), requires_grad=sharded.requires_grad)
            if sharded.grad is not None:
                whole.grad = _whole(sharded.grad)
            state = optimizer.state.get(sharded, {})
            optimizer.state[whole] = {key: _whole(value) for key, value in state.items()}
            swaps.append(_Swap(record, sharded, record.shard, state))
            record.parameter, record.shard = whole, None
        replaced = {id(swap.sharded): swap.record.parameter for swap in swaps}
        for name, weight in originals.items():
            if id(weight) in replaced:
                weights[name] = replaced[id(weight)]
            elif is_sharded(weight):
                weights[name] = nn.Parameter(_whole(weight.detach()), requires_grad=False)
        yield
    finally:
        weights.update(originals)
        with torch.no_grad():
            for swap in swaps:
                whole = swap.record.parameter
                local(swap.sharded).copy_(swap.rows.of(whole))
                for key, value in optimizer.state.pop(whole, {}).items():
                    target = swap.state.get(key)
                    if not (isinstance(target, torch.Tensor) and isinstance(value, torch.Tensor)):
                        continue
                    if is_sharded(target) and value.shape == whole.shape:
                        local(target).copy_(swap.rows.of(value))
                swap.record.parameter, swap.record.shard = swap.sharded, swap.rows
