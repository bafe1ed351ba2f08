"""Schedules against their closed forms, and their state round trip."""

from __future__ import annotations

import math

import pytest

from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import CosineDecay, LinearDecay, MagnitudePruneDecay, registry


def test_registry_keys() -> None:
    assert set(registry) == {"cosine", "linear", "magnitude-prune"}


def test_cosine_closed_form_and_freeze_after_t_max() -> None:
    decay = CosineDecay(prune_rate=0.3, T_max=100, eta_min=0.01)
    assert decay.get_dr() == pytest.approx(0.3)
    for t in (0, 1, 25, 50, 99, 100, 150):
        decay.step(t)
        expected = 0.01 + (0.3 - 0.01) * (1 + math.cos(math.pi * min(t, 100) / 100)) / 2
        assert decay.get_dr() == pytest.approx(expected, abs=1e-12)
    assert decay.get_dr() == pytest.approx(0.01)


def test_cosine_steps_by_one_without_argument() -> None:
    decay = CosineDecay(0.5, T_max=4)
    values = []
    for _ in range(6):
        decay.step()
        values.append(decay.get_dr())
    assert values == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3, 4, 4, 4)])


def test_cosine_last_epoch_starts_later() -> None:
    assert CosineDecay(0.3, T_max=10, last_epoch=5).get_dr() == pytest.approx(0.15)


def test_linear_closed_form() -> None:
    decay = LinearDecay(prune_rate=0.3, T_max=10)
    assert decay.get_dr() == pytest.approx(0.3)
    for t in range(15):
        decay.step(t)
        assert decay.get_dr() == pytest.approx(max(0.0, 0.3 - 0.03 * (t + 1)), abs=1e-12)


def test_magnitude_prune_cubic_target() -> None:
    decay = MagnitudePruneDecay(initial_sparsity=0.0, final_sparsity=0.8, T_max=1000, T_start=200, interval=100)
    assert decay.cumulative_sparsity(0) == 0.0
    assert decay.cumulative_sparsity(199) == 0.0
    assert decay.cumulative_sparsity(200) == pytest.approx(0.0)
    assert decay.cumulative_sparsity(600) == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert decay.cumulative_sparsity(1000) == pytest.approx(0.8)
    assert decay.cumulative_sparsity(5000) == pytest.approx(0.8)


def test_magnitude_prune_rate_is_the_missing_sparsity() -> None:
    decay = MagnitudePruneDecay(final_sparsity=0.9, T_max=1000, T_start=0, interval=100)
    decay.step(500, current_sparsity=0.5)
    assert decay.get_dr() == pytest.approx(max(decay.cumulative_sparsity(500) - 0.5, 0.0))
    decay.step(500, current_sparsity=0.95)
    assert decay.get_dr() == 0.0
    decay.step(500)  # default: the target one interval earlier
    assert decay.get_dr() == pytest.approx(decay.cumulative_sparsity(500) - decay.cumulative_sparsity(400))


def test_state_round_trip_continues_identically() -> None:
    first = CosineDecay(0.3, T_max=50)
    for t in range(20):
        first.step(t)
    second = CosineDecay(0.3, T_max=50)
    second.load_state_dict(first.state_dict())
    first.step()
    second.step()
    assert first.get_dr() == second.get_dr()


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: CosineDecay(prune_rate=1.5), "prune_rate must be in [0, 1]"),
        (lambda: CosineDecay(T_max=0), "T_max must be a whole number >= 1"),
        (lambda: LinearDecay(prune_rate=-0.1), "prune_rate must be in [0, 1]"),
        (lambda: MagnitudePruneDecay(T_max=100, T_start=100), "T_start must be in [0, T_max=100)"),
        (lambda: MagnitudePruneDecay(final_sparsity=float("nan")), "final_sparsity must be in [0, 1]"),
    ],
)
def test_bad_arguments_raise_one_clear_error(factory, message: str) -> None:
    with pytest.raises(SparseLearningError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        factory()
