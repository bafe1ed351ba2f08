"""Schedules against their closed forms, and their state round trip."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import (
    CosineDecay,
    LinearDecay,
    MagnitudePruneDecay,
    density_of_sparsity,
    pruning_steps,
    registry,
)


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


def test_magnitude_prune_schedule_ends_at_the_last_pruning_step_not_between_two() -> None:
    # `sparselearning train masking=Pruning optimizer.epochs=1` on MNIST: 500 steps, pruning from step 50 to 375
    # every 100 steps. The last pruning step is 300; the schedule used to reach s_f only at 375, so it stopped at
    # s(300) = 0.938 (density 0.0617).
    decay = MagnitudePruneDecay(final_sparsity=1 - 0.05, T_max=375, T_start=50, interval=100)
    assert decay.last_pruning_step == 300
    assert decay.cumulative_sparsity(300) == 1 - 0.05
    assert decay.cumulative_sparsity(200) == pytest.approx(0.95 * (1 - (1 - 150 / 250) ** 3))
    assert decay.cumulative_sparsity(299) < 1 - 0.05


def test_magnitude_prune_starting_on_its_last_step_prunes_once_to_the_final_sparsity() -> None:
    decay = MagnitudePruneDecay(final_sparsity=0.8, T_max=10, T_start=10, interval=5)
    assert [decay.cumulative_sparsity(t) for t in (9, 10, 11)] == [0.0, 0.8, 0.8]


def test_pruning_steps_are_the_steps_masking_updates_on() -> None:
    assert list(pruning_steps(T_start=50, T_max=375, interval=100)) == [100, 200, 300]
    assert list(pruning_steps(T_start=0, T_max=9, interval=3)) == [3, 6, 9], "step 0 never updates"
    assert list(pruning_steps(T_start=4, T_max=4, interval=2)) == [4]
    assert list(pruning_steps(T_start=5, T_max=9, interval=10)) == []


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 40), length=st.integers(1, 40), interval=st.integers(1, 15))
def test_pruning_steps_match_masking_is_update_step(start: int, length: int, interval: int) -> None:
    """The decay's pruning steps are exactly the steps a Masking built as methods.pruning builds it updates on."""
    end = start + length
    layer = torch.nn.Linear(2, 2)
    masking = Masking(
        torch.optim.SGD(layer.parameters(), lr=0.1),
        None,
        density=1.0,
        update_frequency=interval,
        start_when=start,
        end_when=end + 1,
    )
    masking.add_module(layer)
    updates = []
    for step in range(end + 2 * interval):
        masking.mask_step = step
        if masking.is_update_step():
            updates.append(step)
    assert updates == list(pruning_steps(start, end, interval))


@pytest.mark.parametrize("density", [0.05, 0.02, 0.1, 0.3, 0.15, 0.5, 0.123, 1.0, 0.0])
def test_density_of_sparsity_recovers_the_density_as_written(density: float) -> None:
    assert density_of_sparsity(1.0 - density) == density


@given(digits=st.integers(1, 15), numerator=st.integers(0, 10**15))
def test_density_of_sparsity_recovers_every_short_decimal(digits: int, numerator: int) -> None:
    density = float(f"{numerator % 10**digits}e-{digits}")
    assert density_of_sparsity(1.0 - density) == density


def test_target_nonzero_is_the_exact_count_other_methods_use() -> None:
    # 1 - (1 - 0.05) = 0.050000000000000044: of 10 weights, round(0.5000000000000004) = 1, round(0.05 * 10) = 0
    decay = MagnitudePruneDecay(final_sparsity=1 - 0.05, T_max=30, T_start=0, interval=10)
    assert decay.target_nonzero(10, step=30) == round(0.05 * 10) == 0
    assert decay.target_nonzero(1030, step=30) == round(0.05 * 1030) == 52
    assert decay.target_nonzero(200, step=0) == 200, "dense before the schedule starts"
    assert decay.target_nonzero(200, step=10) == round((1 - decay.cumulative_sparsity(10)) * 200)
    decay.step(20, current_sparsity=0.5)
    assert decay.target_nonzero(200) == round((1 - decay.cumulative_sparsity(20)) * 200), "the step last set"


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
        (lambda: MagnitudePruneDecay(T_max=100, T_start=101), "T_start must be in [0, T_max=100], got 101"),
        (lambda: MagnitudePruneDecay(T_max=100, T_start=-1), "T_start must be in [0, T_max=100], got -1"),
        (lambda: MagnitudePruneDecay(final_sparsity=float("nan")), "final_sparsity must be in [0, 1]"),
        (
            lambda: MagnitudePruneDecay(T_max=75, T_start=0, interval=100),
            "no pruning step: no multiple of interval=100 lies in [max(T_start, 1), T_max] = [1, 75]; use a smaller "
            "interval or a wider window",
        ),
    ],
)
def test_bad_arguments_raise_one_clear_error(factory, message: str) -> None:
    with pytest.raises(SparseLearningError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        factory()
