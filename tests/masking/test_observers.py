"""Observers see every update and restore; their state travels in the masking's checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.masking.observers import EverActive, MaskObserver
from sparselearning.masking.topology import TopologyChange


class _Recorder(MaskObserver):
    state_key = "recorder"

    def __init__(self) -> None:
        self.updates: list[int] = []
        self.restored: list[tuple[int, Any]] = []
        self.forgotten: list[str] = []

    def after_update(self, change: TopologyChange) -> None:
        self.updates.append(change.step)

    def after_restore(self, masks: Mapping[str, torch.Tensor], step: int, saved: Any) -> None:
        self.restored.append((step, saved))

    def forget(self, name: str) -> None:
        self.forgotten.append(name)

    def state_dict(self) -> dict[str, int]:
        return {"updates": len(self.updates)}


def _train(masking: Masking, model: nn.Module, steps: int) -> None:
    for step in range(steps):
        masking.optimizer.zero_grad()
        model(torch.randn(8, 12, generator=torch.Generator().manual_seed(step))).pow(2).sum().backward()
        masking.step()


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16, bias=False), nn.ReLU(), nn.Linear(16, 3, bias=False))


def test_an_observer_hears_every_update_and_restore_and_saves_its_state() -> None:
    model = _model()
    recorder = _Recorder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.set_(model, optimizer, density=0.3, total_steps=40, update_frequency=5)
    masking.add_observer(recorder)
    _train(masking, model, 21)
    assert recorder.updates == [5, 10, 15, 20]
    state = masking.state_dict()
    assert state["recorder"] == {"updates": 4}
    masking.load_state_dict(state)
    assert recorder.restored == [(21, {"updates": 4})]
    masking.remove_weight("2.weight")
    assert recorder.forgotten == ["2.weight"]


def test_ever_active_is_the_union_of_every_mask_and_survives_a_round_trip() -> None:
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.set_(model, optimizer, density=0.3, total_steps=40, update_frequency=5)
    union = {name: mask.clone() for name, mask in masking.mask_dict.items()}
    for _ in range(3):
        _train(masking, model, 5)
        for name, mask in masking.mask_dict.items():
            union[name] |= mask
    assert all(torch.equal(union[name], masking.ever_active[name]) for name in union)
    saved = masking.state_dict()
    assert set(saved["ever_active"]) == set(union)
    restored = EverActive({})
    restored.after_restore(masking.mask_dict, masking.mask_step, saved["ever_active"])
    assert all(torch.equal(restored.masks[name], union[name]) for name in union)
    restored.after_restore(masking.mask_dict, masking.mask_step, None)
    assert restored.masks == {}, "a checkpoint without the record restores an empty one, never stale masks"


def test_low_memory_keeps_no_ever_active_record() -> None:
    model = _model()
    masking = Masking(torch.optim.SGD(model.parameters(), lr=0.1), density=0.3, low_memory=True)
    masking.add_module(model)
    assert masking.ever_active == {} and masking.state_dict()["ever_active"] == {}


def test_the_checkpoint_layout_is_the_one_written_before_observers_existed() -> None:
    """Checkpoints saved before the redesign held exactly these keys (flops when tracked): they still load."""
    from sparselearning.counting import track_flops

    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.3, total_steps=40, update_frequency=5)
    track_flops(masking, torch.randn(1, 12))
    _train(masking, model, 6)
    state = masking.state_dict()
    assert set(state) == {
        "masks", "ever_active", "mask_step", "baseline_nonzero", "total_params", "dense_layers",
        "name2prune_rate", "stats", "decay", "flops", "config",
    }  # fmt: skip
    average = masking.avg_inference_FLOPs
    other_model = _model()
    other = methods.rigl(other_model, torch.optim.SGD(other_model.parameters(), lr=0.1, momentum=0.9),
                         density=0.3, total_steps=40, update_frequency=5)  # fmt: skip
    track_flops(other, torch.randn(1, 12))
    other.load_state_dict(state)
    assert other.avg_inference_FLOPs == average
    assert all(torch.equal(other.ever_active[n], masking.ever_active[n]) for n in masking.ever_active)


def test_the_ever_active_record_holds_one_bit_per_weight() -> None:
    masks = {"a": torch.rand(300, 100) < 0.1, "b": torch.rand(10, 7) < 0.5}
    record = EverActive(masks)
    assert sum(bits.numel() * bits.element_size() for bits in record._bits.values()) == 30000 // 8 + (70 + 7) // 8
    assert record.count() == sum(int(mask.sum()) for mask in masks.values())
    grown = torch.rand(300, 100) < 0.1
    record.include("a", grown)
    assert torch.equal(record.masks["a"], masks["a"] | grown) and record.masks["a"].shape == (300, 100)
    assert record.count() == int((masks["a"] | grown).sum()) + int(masks["b"].sum())
