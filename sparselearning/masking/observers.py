"""What runs after a mask update or a restore, without the core knowing what it is.

An observer is attached with `Masking.add_observer`. After every update it receives the `TopologyChange`; after
`Masking.load_state_dict` it receives the restored masks and, when it keeps state (`state_key` is set), what it
saved in the checkpoint under that key. FLOPs tracking (`sparselearning.counting`), the cross-rank mask check
(`sparselearning.sync`) and the ever-active record below are observers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from sparselearning.masking.topology import TopologyChange
from sparselearning.ops.bits import count_bits, pack_bits, unpack_bits


class MaskObserver:
    """Base class with do-nothing hooks: override the ones you need.

    `state_key`: the key under which `Masking.state_dict()` stores `state_dict()` (None: the observer keeps no
    state in checkpoints).
    """

    state_key: str | None = None

    def after_update(self, change: TopologyChange) -> None:
        """Called after every mask update, with what changed."""

    def after_restore(self, masks: Mapping[str, torch.Tensor], step: int, saved: Any) -> None:
        """Called by `Masking.load_state_dict` once the masks are restored; `saved` is what `state_dict()`
        returned when the checkpoint was written (None when it holds nothing under `state_key`)."""

    def forget(self, name: str) -> None:
        """Called when a parameter stops being masked."""

    def state_dict(self) -> Any:
        return None


@runtime_checkable
class FlopsSource(Protocol):
    """An observer that knows the model's inference FLOPs: what `Masking.inference_FLOPs`, `dense_FLOPs` and
    `avg_inference_FLOPs` read (`sparselearning.counting.tracker.FlopsTracker` is one)."""

    def inference_flops(self) -> tuple[float, float]:
        """(with the current masks, without masks), per example."""
        ...

    def average(self, step: int) -> float:
        """FLOPs per example with masks, averaged over steps 0..step."""
        ...


class EverActive(MaskObserver):
    """For every masked layer, which weights have been active at any point: the record behind the ITOP rate
    (in-time over-parameterisation, Liu et al. 2021), kept at one bit per weight (packed, an eighth of a byte).

    Checkpoints hold it as bool tensors, as before packing: the saved format does not depend on how it is kept.
    """

    state_key = "ever_active"

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self._bits: dict[str, torch.Tensor] = {}
        self._shapes: dict[str, torch.Size] = {}
        self.reset(masks)

    def reset(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Start the record again from `masks` (only the weights active in them)."""
        self._bits = {name: pack_bits(mask) for name, mask in masks.items()}
        self._shapes = {name: mask.shape for name, mask in masks.items()}

    def include(self, name: str, mask: torch.Tensor) -> None:
        """Add the weights active in `mask` to layer `name`'s record."""
        self._bits[name].bitwise_or_(pack_bits(mask))

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The record as a bool tensor per layer, shaped like its weight (unpacked afresh: a copy)."""
        return {
            name: unpack_bits(bits, self._shapes[name].numel()).view(self._shapes[name])
            for name, bits in self._bits.items()
        }

    def count(self) -> int:
        """How many masked weights have been active at some step."""
        return sum(count_bits(bits) for bits in self._bits.values())

    def after_update(self, change: TopologyChange) -> None:
        for name in self._bits:
            self.include(name, change.masks[name])

    def after_restore(self, masks: Mapping[str, torch.Tensor], step: int, saved: Any) -> None:
        saved = saved if isinstance(saved, Mapping) else {}
        self.reset(
            {
                name: tensor.to(device=masks[name].device, dtype=torch.bool)
                for name, tensor in saved.items()
                if name in masks and isinstance(tensor, torch.Tensor)
            }
        )

    def forget(self, name: str) -> None:
        self._bits.pop(name, None)
        self._shapes.pop(name, None)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: mask.cpu() for name, mask in self.masks.items()}
