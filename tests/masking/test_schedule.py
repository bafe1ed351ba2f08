"""When masks change, and the drop-fraction schedule's step."""

from __future__ import annotations

import pytest

from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import CosineDecay
from sparselearning.masking.schedule import UpdateSchedule, advance_decay


def test_updates_every_frequency_steps_between_start_and_end_never_at_step_zero() -> None:
    schedule = UpdateSchedule(frequency=10, start=20, end=50)
    assert [step for step in range(70) if schedule.is_update_step(step)] == [20, 30, 40]
    assert [step for step in range(35) if UpdateSchedule(frequency=10).is_update_step(step)] == [10, 20, 30]
    assert not any(UpdateSchedule().is_update_step(step) for step in range(100))


def test_a_frequency_below_one_is_refused_in_one_line() -> None:
    with pytest.raises(SparseLearningError, match="update_frequency"):
        UpdateSchedule(frequency=0)


class _Cumulative:
    """A schedule that, like gradual pruning's, reads the current sparsity."""

    mode = "cumulative"

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def step(self, step: int, sparsity: float = 0.0) -> None:
        self.calls.append((step, sparsity))


def test_advance_decay_passes_the_sparsity_only_to_cumulative_schedules() -> None:
    cumulative = _Cumulative()
    advance_decay(cumulative, 7, density=0.25)  # type: ignore[arg-type]
    assert cumulative.calls == [(7, 0.75)]
    cosine = CosineDecay(0.5, T_max=10)
    advance_decay(cosine, 5, density=0.25)
    assert cosine.get_dr() == pytest.approx(0.25)
    advance_decay(None, 3, density=1.0)  # no schedule: nothing to do
