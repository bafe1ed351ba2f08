"""Inference FLOPs of a masked model followed over training, for methods whose layer densities move.

The count is taken again after every mask update; the average weights each value by the number of steps it
was in force, which is what training actually paid per forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparselearning.counting.inference import InferenceFlops, count_inference_flops, layer_densities


class FlopsTracker:
    """Counts FLOPs on `example_input` whenever asked and keeps their step-weighted mean."""

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

    def state_dict(self) -> dict[str, Any]:
        return {"since": self._since, "weighted_sum": self._weighted_sum}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._since = int(state["since"])
        self._weighted_sum = float(state["weighted_sum"])
