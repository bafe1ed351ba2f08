"""Misuse refused early with one line: stepping the optimizer behind Masking's back, frozen weights, exclude
entries that match nothing, steps past total_steps, momentum modes without momentum."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.coverage import FROZEN
from sparselearning.errors import SparseLearningError, SparseLearningWarning
from sparselearning.funcs.decay import CosineDecay
from sparselearning.misuse import momentum_problem
from tests.helpers import SmallConvNet, backward, inactive_values_are_zero, small_mlp, train

FIX = r"call masking\.step\(\) instead of optimizer\.step\(\)"


def _rigl(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **options) -> Masking:
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    options = {"density": 0.1, "total_steps": 100, "update_frequency": 4, **options}
    return methods.rigl(model, optimizer, **options)


def _stray(masking: Masking) -> int:
    """Masked positions whose weight is nonzero."""
    return sum(int((masking.params[n].detach()[~m] != 0).sum()) for n, m in masking.mask_dict.items())


# ---------------------------------------------------------------- optimizer.step() instead of masking.step()


def test_optimizer_step_in_place_of_masking_step_is_caught_by_the_next_stats_read() -> None:
    model = small_mlp()
    masking = _rigl(model)
    train(model, masking.optimizer, masking, 2)
    for step in range(2):
        backward(model, masking.optimizer, step)
        masking.optimizer.step()  # the misuse: masked weights regrow
    stray = _stray(masking)
    assert stray > 0
    with pytest.raises(
        SparseLearningError, match=f"^nonzero weights at masked positions: {stray:,} .*; {FIX}"
    ) as caught:
        _ = masking.stats.total_density
    assert "\n" not in str(caught.value)
    with pytest.raises(SparseLearningError, match=FIX):
        masking.check()
    with pytest.raises(SparseLearningError, match=FIX):
        _ = masking.stats  # still refused: nothing was repaired


def test_optimizer_step_is_caught_at_the_next_mask_update_at_the_latest() -> None:
    model = small_mlp()
    masking = _rigl(model)
    train(model, masking.optimizer, masking, 4)  # steps 0..3
    backward(model, masking.optimizer, 4)
    masking.optimizer.step()  # the misuse; Masking's step counter stays at 4
    backward(model, masking.optimizer, 5)
    assert masking.is_update_step()
    with pytest.raises(SparseLearningError, match=FIX):
        masking.step()


def test_a_correct_loop_passes_every_check_and_reads_stats_without_recounting(monkeypatch) -> None:
    model = SmallConvNet()
    masking = _rigl(model)
    train(model, masking.optimizer, masking, 9)  # two mask updates
    masking.check()
    assert masking.stats.total_nonzero == masking.baseline_nonzero
    calls = []
    counting = torch.count_nonzero
    monkeypatch.setattr(torch, "count_nonzero", lambda *a, **k: calls.append(1) or counting(*a, **k))
    _ = masking.stats.total_density
    assert calls == [], "no weight changed since the last check: nothing is counted"
    backward(model, masking.optimizer, 9)
    assert not masking.is_update_step()
    masking.step()
    assert calls == [], "the per-step path counts nothing (no host sync)"
    _ = masking.stats.model_weight_density
    assert len(calls) == 3 + 2, "after a step, one count per weight tensor and per sparse layer (conv1 is dense)"


@pytest.mark.parametrize("method", ["snfs", "rigl"])
def test_the_check_also_holds_for_dense_gradients_and_adam(method: str) -> None:
    model = SmallConvNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    masking = getattr(methods, method)(model, optimizer, density=0.2, total_steps=40, update_frequency=3)
    train(model, optimizer, masking, 10)
    masking.check()
    backward(model, optimizer, 10)
    optimizer.step()
    with pytest.raises(SparseLearningError, match=FIX):
        masking.check()


# ---------------------------------------------------------------- frozen weights


def test_frozen_weights_are_never_masked_and_training_runs_through_updates() -> None:
    model = small_mlp()
    model[1].requires_grad_(False)
    frozen = model[1].weight.detach().clone()
    with pytest.warns(SparseLearningWarning, match=r"^79\.6% .*: 1\.weight \(frozen, requires_grad=False\);"):
        masking = _rigl(model)
    assert set(masking.mask_dict) == {"3.weight", "5.weight"}
    assert [(r.name, r.reason) for r in masking.coverage if not r.masked] == [("1.weight", FROZEN)]
    train(model, masking.optimizer, masking, 12)  # three mask updates; the old code failed at the first
    assert torch.equal(model[1].weight, frozen)
    assert inactive_values_are_zero(masking)
    assert masking.stats.total_nonzero == round(0.1 * (64 * 32 + 32 * 10))


# ---------------------------------------------------------------- exclude entries


def test_an_exclude_entry_that_matches_nothing_names_the_closest() -> None:
    model = SmallConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SparseLearningError) as caught:
        Masking(optimizer, density=0.1).add_module(model, exclude=["convv2"])
    assert str(caught.value) == (
        "exclude entry 'convv2' matches no weight tensor of the model; closest names: conv2, conv1, conv2.weight"
    )
    with pytest.raises(SparseLearningError, match="exclude entry 'bias' matches no weight tensor"):
        methods.rigl(SmallConvNet(), optimizer, exclude=["bias"])  # biases are no weight tensors
    with pytest.raises(SparseLearningError, match="exclude entry 'zzz' matches no weight tensor.*look like: conv1"):
        methods.static(SmallConvNet(), optimizer, exclude=["zzz"])


def test_remove_weight_partial_name_refuses_a_typo_but_not_an_already_dense_weight() -> None:
    model = SmallConvNet()
    masking = methods.static(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(SparseLearningError, match="'fcc' matches no weight tensor of the model; closest names: fc"):
        masking.remove_weight_partial_name("fcc")
    masking.remove_weight_partial_name("fc")
    masking.remove_weight_partial_name("fc")  # matches a weight, now dense: nothing to do
    assert set(masking.mask_dict) == {"conv1.weight", "conv2.weight"}


def test_a_module_type_absent_from_the_model_is_not_an_error() -> None:
    model = small_mlp()
    masking = methods.static(model, torch.optim.SGD(model.parameters(), lr=0.1), exclude=[nn.Conv2d])
    assert len(masking.mask_dict) == 3


# ---------------------------------------------------------------- total_steps


def test_stepping_past_total_steps_warns_once() -> None:
    model = small_mlp()
    masking = _rigl(model, total_steps=6, update_frequency=2)
    assert masking.total_steps == 6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, masking.optimizer, masking, 6)
        assert caught == []
        train(model, masking.optimizer, masking, 3)
    assert [w.category for w in caught] == [SparseLearningWarning]
    assert str(caught[0].message) == (
        "masking.step() called for step 7 of a run planned for total_steps=6: mask and drop-fraction schedules "
        "are past their end; pass the true total_steps"
    )


@pytest.mark.parametrize("builder", ["set_", "snfs", "rigl", "struct_rigl", "pruning"])
def test_every_builder_with_a_schedule_passes_total_steps_on(builder: str) -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    extra = {"interval": 10} if builder == "pruning" else {}
    assert getattr(methods, builder)(model, optimizer, 0.5, total_steps=77, **extra).total_steps == 77
    assert methods.static(small_mlp(), optimizer, total_steps=5).total_steps == 5


def test_total_steps_must_be_a_whole_number() -> None:
    with pytest.raises(SparseLearningError, match="total_steps must be a whole number >= 1, got 0"):
        Masking(torch.optim.SGD(small_mlp().parameters(), lr=0.1), total_steps=0)


# ---------------------------------------------------------------- momentum modes need momentum


def test_snfs_with_momentum_free_sgd_is_refused_when_built() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SparseLearningError) as caught:
        methods.snfs(model, optimizer, total_steps=100)
    assert str(caught.value) == (
        "growth_mode='momentum' and redistribution_mode='momentum' need optimizer momentum, but SGD has "
        "momentum=0, so it keeps no momentum buffer; use SGD(momentum=0.9), Adam or AdamW, or "
        "growth_mode='absolute-gradient' and redistribution_mode='none'"
    )
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), None),
        (lambda p: torch.optim.Adam(p), None),
        (lambda p: torch.optim.AdamW(p), None),
        (lambda p: torch.optim.RMSprop(p, momentum=0.9), None),
        (lambda p: torch.optim.RMSprop(p), "RMSprop has momentum=0, so it keeps no momentum buffer"),
        (lambda p: torch.optim.Adagrad(p), "Adagrad keeps no momentum buffer Masking can read"),
        (
            lambda p: torch.optim.SGD([{"params": p[:2], "momentum": 0.9}, {"params": p[2:]}], lr=0.1),
            "SGD has momentum=0, so it keeps no momentum buffer",
        ),
    ],
)
def test_which_optimizers_keep_momentum(make, problem) -> None:
    found = momentum_problem(make(list(small_mlp().parameters())))
    assert found == problem if problem is None else found.startswith(problem)


def test_momentum_redistribution_alone_is_checked_and_no_schedule_means_no_check() -> None:
    model = small_mlp()
    optimizer = torch.optim.Adagrad(model.parameters())
    with pytest.raises(SparseLearningError, match="^redistribution_mode='momentum' needs optimizer momentum"):
        methods.rigl(model, optimizer, total_steps=100, redistribution_mode="momentum")
    with pytest.raises(SparseLearningError, match="^growth_mode='momentum' needs optimizer momentum"):
        Masking(optimizer, CosineDecay(0.3, T_max=10), redistribution_mode="none")
    Masking(optimizer)  # no drop schedule: masks never move, momentum is never read


def test_non_finite_active_weights_are_not_mistaken_for_stray_masked_weights() -> None:
    model = small_mlp()
    masking = _rigl(model)
    active = masking.mask_dict["3.weight"].nonzero()[0].tolist()
    with torch.no_grad():
        model[3].weight[tuple(active)] = float("inf")
    masking.check()  # an inf at an active position is no masked weight
    assert masking.stats.model_weight_nonzero == masking.stats.total_nonzero
    inactive = (~masking.mask_dict["3.weight"]).nonzero()[0].tolist()
    with torch.no_grad():
        model[3].weight[tuple(inactive)] = float("nan")
    with pytest.raises(SparseLearningError, match="^nonzero weights at masked positions: 1 \\(1 in '3.weight'\\);"):
        masking.check()
