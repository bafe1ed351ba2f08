"""What a Masking holds between steps, counted from its live tensors: bool masks (1 byte per masked weight) and the
ever-active record (one bit per weight, packed; none under `low_memory`); no float copy of the masks, and nothing for
scratch. And what a mask update adds on top, counted from the profiler's record of every allocation: the chunked
float masks and the chunk-by-chunk growth scores keep it under 3 bytes per masked weight once layers are larger
than a chunk (here the chunk is shrunk to 1 Ki entries so that a small model is in that regime)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.memory import _held_bytes, live_peak_bytes
from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.ops import mask_chunks, select


def _train(low_memory: bool, method=methods.rigl) -> tuple[Masking, list[int]]:
    """Seven steps with updates at steps 3 and 6; returns the masking and the live-tensor peak of each update."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = method(
        model, optimizer, density=0.1, total_steps=100, update_frequency=3, end_fraction=1.0, low_memory=low_memory
    )
    generator = torch.Generator().manual_seed(1)
    peaks = []
    for _ in range(7):
        optimizer.zero_grad(set_to_none=True)
        inputs = torch.randn(16, 64, generator=generator)
        labels = torch.randint(0, 10, (16,), generator=generator)
        nn.functional.cross_entropy(model(inputs), labels).backward()
        if masking.is_update_step():
            peaks.append(live_peak_bytes(masking.step))
        else:
            masking.step()
    masking.check()
    assert masking.stats.total_density == pytest.approx(0.1, abs=0.01)
    return masking, peaks


@pytest.mark.parametrize(("low_memory", "bound"), [(False, 1.125), (True, 1.0)])
def test_bytes_held_per_masked_weight_between_steps_are_bounded(low_memory: bool, bound: float) -> None:
    masking, _ = _train(low_memory)
    held = _held_bytes(masking)
    weights = masking.total_params
    assert held["scratch"] == 0
    assert sum(held.values()) / weights <= bound
    assert held["masks"] == weights  # one byte per masked weight
    assert held["ever_active"] == (0 if low_memory else sum((r.numel + 7) // 8 for r in masking.records.values()))


@pytest.mark.parametrize("method", [methods.rigl, methods.snfs, methods.set_], ids=["rigl", "snfs", "set"])
def test_a_mask_update_adds_under_three_bytes_per_masked_weight(monkeypatch, method) -> None:
    # The benchmark's layers hold millions of weights; scaled down so that these small layers are just as many
    # chunks and selection samples long.
    monkeypatch.setattr(mask_chunks, "CHUNK", 1024)
    monkeypatch.setattr(select, "_DIRECT_LIMIT", 1024)
    monkeypatch.setattr(select, "_SORT_LIMIT", 256)
    monkeypatch.setattr(select, "_SAMPLE_SIZE", 512)
    masking, peaks = _train(False, method)
    assert len(peaks) == 2 and all(peak > 0 for peak in peaks), "the profiler saw the updates allocate"
    held = sum(_held_bytes(masking).values())
    assert all((held + peak) / masking.total_params <= 4.0 for peak in peaks), peaks
    assert all(peak / masking.total_params <= 2.875 for peak in peaks), peaks
