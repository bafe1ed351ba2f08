"""The arithmetic of a mask update: each layer's share of the regrowth, and the record of what changed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from sparselearning.ops.select import apportion


@dataclass(frozen=True)
class TopologyChange:
    """What one mask update did, handed to the observers.

    :param step: the step at which the update ran (the new masks hold from `step + 1`)
    :param masks: the masks after the update, by name (live: read them, do not keep them)
    :param removed: weights dropped per masked layer
    :param grown: weights grown per masked layer
    """

    step: int
    masks: Mapping[str, torch.Tensor]
    removed: dict[str, int] = field(default_factory=dict)
    grown: dict[str, int] = field(default_factory=dict)

    @property
    def total_removed(self) -> int:
        return sum(self.removed.values())

    @property
    def total_grown(self) -> int:
        return sum(self.grown.values())


def redistribution_shares(raw: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """Each layer's share of the regrowth from its raw statistic: the statistic over their sum (NaN counts as 0,
    and every share is 0 when nothing is positive). Returns the sum and the shares."""
    total = sum(value for value in raw.values() if not math.isnan(value))
    return total, {name: (value / total if total > 0 else 0.0) for name, value in raw.items()}


def regrowth_counts(
    prunable: list[str],
    removed: Mapping[str, int],
    *,
    redistribute: bool,
    shares: Mapping[str, float],
    capacities: Mapping[str, int],
) -> dict[str, int]:
    """How many weights each prunable layer grows back: exactly what it lost, or (with redistribution) its share
    of everything that was lost, never more than its inactive positions, summing exactly to the total lost."""
    if not redistribute:
        return {name: removed.get(name, 0) for name in prunable}
    total = sum(removed.values())
    counts = apportion(total, [shares.get(name, 0.0) for name in prunable], [capacities[name] for name in prunable])
    return dict(zip(prunable, counts, strict=True))
