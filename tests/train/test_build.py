"""Building a run from its configuration: gradual pruning's schedule ends exactly at the configured density."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselearning.core import Masking
from sparselearning.data.registry import DatasetInfo
from sparselearning.errors import SparseLearningError
from sparselearning.train.build import build_masking, build_model, build_optimizer, pruning_end
from sparselearning.train.loop import train
from sparselearning.train.settings import Schedule, schedule_for
from tests.train.conftest import compose_config

MNIST = DatasetInfo("MNIST", 10, (1, 28, 28), (0.1307,), (0.3081,), False)


def _built(cfg, steps_per_epoch: int) -> tuple[Masking, Schedule]:
    schedule = schedule_for(cfg, steps_per_epoch)
    model = build_model(cfg, MNIST)
    return build_masking(cfg, model, build_optimizer(cfg, model), schedule), schedule


def _nonzero_after_each_step(masking: Masking, steps: int) -> list[int]:
    """Step the masking without gradients: weights stay as initialised, pruning still follows the schedule."""
    counts = []
    for _ in range(steps):
        masking.step()
        counts.append(masking.stats.total_nonzero)
    return counts


def test_one_epoch_of_mnist_pruned_to_5_percent_ends_at_exactly_5_percent() -> None:
    # `sparselearning train masking=Pruning masking.density=0.05 optimizer.epochs=1`: MNIST's 50,000 training
    # images at batch 100 are 500 steps; pruning every 100 steps from step 50 to 375. It used to end at density
    # 0.0617, the cubic's value at step 300, the last pruning step before 375.
    cfg = compose_config(["masking=Pruning", "masking.density=0.05", "optimizer.epochs=1"])
    masking, schedule = _built(cfg, steps_per_epoch=500)
    assert (schedule.start_when, schedule.end_when, schedule.update_frequency) == (50, 375, 100)
    counts = _nonzero_after_each_step(masking, 500)
    target = round(0.05 * masking.total_params)
    assert (masking.total_params, target) == (266_200, 13_310)
    assert counts[299] > target == counts[300] == counts[-1]
    assert masking.stats.total_density == pytest.approx(0.05, abs=1e-12)


def test_pruning_until_the_run_s_last_step_prunes_on_the_last_step_that_happens() -> None:
    # end_when = the step count: step 4 never comes (steps are 0-3), so the schedule must end at step 3.
    cfg = compose_config(
        [
            "masking=Pruning",
            "masking.density=0.3",
            "masking.interval=1",
            "masking.start_when=0",
            "masking.end_when=4",
            "optimizer.epochs=1",
        ]
    )
    masking, schedule = _built(cfg, steps_per_epoch=4)
    assert pruning_end(schedule) == 3 and masking.end_when == 4
    counts = _nonzero_after_each_step(masking, 4)
    assert counts[-1] == round(0.3 * masking.total_params)
    assert counts[1] > counts[2] > counts[3], "pruned at steps 1, 2 and 3"


def test_a_pruning_window_without_an_update_step_is_refused_in_one_line() -> None:
    # 4 steps, pruning every 100: the run would stay dense and call itself 5% dense.
    cfg = compose_config(["masking=Pruning", "masking.start_when=1", "masking.end_when=3", "optimizer.epochs=1"])
    with pytest.raises(SparseLearningError) as error:
        _built(cfg, steps_per_epoch=4)
    assert str(error.value) == (
        "masking=Pruning would never prune: no multiple of the update interval (100 steps) lies between "
        "masking.start_when=1 and step 3 (masking.end_when or the run's last step); lower masking.interval or "
        "widen start_when..end_when"
    )


def test_a_pruning_run_on_synthetic_data_ends_at_the_exact_density(small_config, tmp_path: Path) -> None:
    # 39 steps: pruning every 10 from step 4 to 29, so the last pruning step is 20, not 29.
    summary = train(small_config("masking=Pruning", "masking.interval=10", "dataset.train_size=624"), tmp_path)
    assert summary["steps"] == 39
    assert summary["active_weights"] == round(0.05 * summary["masked_weights"]) == 13_310
