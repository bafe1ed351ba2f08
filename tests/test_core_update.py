"""The work a mask update saves under dense gradients: the stray-weight check is skipped while nothing changed
since Masking zeroed the weights itself, and still runs (and refuses) after anything else wrote to them; grown
weights' momentum is reset at the grown positions only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import CosineDecay


def _snfs(keep_grown_momentum: bool = False) -> tuple[nn.Module, torch.optim.Optimizer, Masking]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = Masking(
        optimizer,
        CosineDecay(0.3, T_max=1000),
        density=0.3,
        growth_mode="momentum",
        redistribution_mode="momentum",
        dense_gradients=True,
        keep_grown_momentum=keep_grown_momentum,
    )
    masking.add_module(model)
    for step in range(2):
        _backward(model, optimizer, step)
        masking.step()
    _backward(model, optimizer, 2)
    return model, optimizer, masking


def _backward(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    optimizer.zero_grad()
    model(torch.randn(8, 20, generator=torch.Generator().manual_seed(step))).pow(2).mean().backward()


def test_an_update_after_a_dense_gradient_step_skips_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, masking = _snfs()
    counted: list[str] = []
    original = Masking._count_stray
    monkeypatch.setattr(
        Masking, "_count_stray", lambda self, record: counted.append(record.name) or original(self, record)
    )
    masking.update_connections()
    assert counted == []
    masking.check()  # an explicit check always counts
    assert counted == ["0.weight", "2.weight"]


def test_a_weight_written_after_the_step_is_still_caught_at_the_update() -> None:
    model, _, masking = _snfs()
    inactive = (~masking.masks["0.weight"]).nonzero()[0]
    with torch.no_grad():
        model[0].weight[tuple(inactive)] = 1.0
    with pytest.raises(SparseLearningError, match="0.weight"):
        masking.update_connections()


@pytest.mark.parametrize("keep", [False, True])
def test_grown_weights_momentum_is_reset_exactly_where_they_grew(keep: bool) -> None:
    _, optimizer, masking = _snfs(keep_grown_momentum=keep)
    before = {name: mask.clone() for name, mask in masking.masks.items()}
    momentum = {name: optimizer.state[p]["momentum_buffer"].clone() for name, p in masking.params.items()}
    masking.update_connections()
    for name, weight in masking.params.items():
        grown = masking.masks[name] & ~before[name]
        assert grown.any()
        after = optimizer.state[weight]["momentum_buffer"]
        assert torch.equal(after[grown], momentum[name][grown] if keep else torch.zeros(int(grown.sum())))
        inactive = ~masking.masks[name]
        assert torch.equal(after[inactive], momentum[name][inactive])  # dense gradients keep their momentum
        kept = masking.masks[name] & before[name]  # unchanged, or reset if dropped and regrown in this update
        assert bool(((after[kept] == momentum[name][kept]) | (after[kept] == 0)).all())


def test_growth_rules_report_where_they_grew_and_that_equals_searching_the_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, optimizer, reported = _snfs()
    reported.update_connections()
    assert set(reported._grown_positions) == {"0.weight", "2.weight"}
    for name, positions in reported._grown_positions.items():
        assert positions.numel() > 0 and bool(reported.masks[name].view(-1)[positions].all())

    monkeypatch.setattr(Masking, "record_growth", lambda self, name, positions: None)  # a rule that says nothing
    _, searched_optimizer, searched = _snfs()
    searched.update_connections()
    assert searched._grown_positions == {}
    for name in reported.masks:
        assert torch.equal(reported.masks[name], searched.masks[name])
        ours, theirs = reported.params[name], searched.params[name]
        assert torch.equal(
            optimizer.state[ours]["momentum_buffer"], searched_optimizer.state[theirs]["momentum_buffer"]
        )
