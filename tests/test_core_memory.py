"""What a Masking holds between steps, counted from its live tensors: bool masks (1 byte per masked weight), the
float copy the default step multiplies by (4), the ever-active record (1); nothing for scratch, which lives only
while a mask update or a check runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.memory import _held_bytes
from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.masking.observers import MaskObserver
from sparselearning.masking.topology import TopologyChange


class _ScratchDuringUpdate(MaskObserver):
    """Records the scratch bytes the masking holds while its update runs."""

    def __init__(self, masking: Masking) -> None:
        self.masking = masking
        self.seen: list[int] = []

    def after_update(self, change: TopologyChange) -> None:
        self.seen.append(sum(t.numel() * t.element_size() for t in self.masking._scratch.values()))


def _train(low_memory: bool) -> tuple[Masking, _ScratchDuringUpdate]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.rigl(
        model, optimizer, density=0.1, total_steps=100, update_frequency=3, end_fraction=1.0, low_memory=low_memory
    )
    observer = _ScratchDuringUpdate(masking)
    masking.add_observer(observer)
    generator = torch.Generator().manual_seed(1)
    for _ in range(7):  # updates at steps 3 and 6
        optimizer.zero_grad(set_to_none=True)
        inputs = torch.randn(16, 64, generator=generator)
        labels = torch.randint(0, 10, (16,), generator=generator)
        nn.functional.cross_entropy(model(inputs), labels).backward()
        masking.step()
    masking.check()
    assert masking.stats.total_density == pytest.approx(0.1, abs=0.01)
    return masking, observer


@pytest.mark.parametrize(("low_memory", "bound"), [(False, 5.125), (True, 1.0)])
def test_bytes_held_per_masked_weight_between_steps_are_bounded(low_memory: bool, bound: float) -> None:
    masking, observer = _train(low_memory)
    held = _held_bytes(masking)
    weights = masking.total_params
    assert held["scratch"] == 0
    assert sum(held.values()) / weights <= bound
    assert held["masks"] == weights  # one byte per masked weight
    assert held["ever_active"] == (0 if low_memory else sum((r.numel + 7) // 8 for r in masking.records.values()))
    assert observer.seen and all(size > 0 for size in observer.seen)  # scratch exists while an update runs
