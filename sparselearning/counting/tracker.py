"""Inference FLOPs of a masked model followed over training, for methods whose layer densities move.

The count is taken again after every mask update; the average weights each value by the number of steps it
was in force, which is what training actually paid per forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

from sparselearning.counting.inference import InferenceFlops, count_inference_flops, layer_densities
from sparselearning.errors import SparseLearningError
from sparselearning.masking.observers import MaskObserver
from sparselearning.masking.topology import TopologyChange


class FlopsTracker(MaskObserver):
    """Counts FLOPs on `example_input` whenever asked and keeps their step-weighted mean.

    As an observer of a `Masking` (see `track_flops`) it counts again after every mask update and restore, and
    its running mean travels in the masking's checkpoints under `state_key`.
    """

    state_key = "flops"

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        self.model = model
        self.example_input = example_input.detach()
        self.last: InferenceFlops | None = None
        self._since = 0
        self._weighted_sum = 0.0

    def measure(self, masks: Mapping[str, torch.Tensor], step: int) -> InferenceFlops:
        """Count now (at `step`); the previous count is credited for the steps since it was taken."""
        if self.last is not None:
            self._weighted_sum += self.last.sparse * max(0, step - self._since)
        self.last = count_inference_flops(self.model, self.example_input, layer_densities(masks))
        self._since = step
        return self.last

    def average(self, step: int) -> float:
        """Mean sparse FLOPs per example over steps 0..step."""
        if self.last is None:
            raise ValueError("nothing measured yet")
        if step <= 0:
            return self.last.sparse
        return (self._weighted_sum + self.last.sparse * max(0, step - self._since)) / step

    def inference_flops(self) -> tuple[float, float]:
        """(with the current masks, without masks), per example, at the last count."""
        if self.last is None:
            raise SparseLearningError("FLOPs are not tracked yet: nothing was measured")
        return self.last.sparse, self.last.dense

    def after_update(self, change: TopologyChange) -> None:
        self.measure(change.masks, change.step + 1)

    def after_restore(self, masks: Mapping[str, torch.Tensor], step: int, saved: Any) -> None:
        self.measure(masks, step)
        if saved is not None:
            self.load_state_dict(saved)

    def state_dict(self) -> dict[str, Any]:
        return {"since": self._since, "weighted_sum": self._weighted_sum}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._since = int(state["since"])
        self._weighted_sum = float(state["weighted_sum"])


class _Tracked(Protocol):
    """What `track_flops` needs of a `Masking`."""

    module: nn.Module | None
    mask_step: int

    @property
    def mask_dict(self) -> Mapping[str, torch.Tensor]: ...

    def add_observer(self, observer: MaskObserver) -> None: ...


def track_flops(masking: _Tracked, example_input: torch.Tensor) -> FlopsTracker:
    """Count a masking's inference FLOPs on `example_input` now and after every mask update, so that
    `masking.inference_FLOPs`, `dense_FLOPs` and `avg_inference_FLOPs` can be read. One example suffices:
    counts are per example.

    :param masking: a `sparselearning.core.Masking` after `add_module`
    :param example_input: a batch the model accepts
    :return: the tracker, attached to the masking as an observer
    """
    if masking.module is None:
        raise SparseLearningError("call masking.add_module(model) before track_flops()")
    tracker = FlopsTracker(masking.module, example_input)
    tracker.measure(masking.mask_dict, masking.mask_step)
    masking.add_observer(tracker)
    return tracker
