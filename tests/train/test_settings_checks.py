"""Every configuration value is checked before work starts: one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselearning.train.app import format_results
from sparselearning.train.loop import _json_safe
from tests.hardening.conftest import run_cli, train_command

CASES = {
    "val_interval=abc": "val_interval must be a whole number >= 1, got 'abc'",
    "dataset.test_batch_size=abc": "dataset.test_batch_size must be a whole number >= 1, got 'abc'",
    "optimizer.label_smoothing=5": "optimizer.label_smoothing must be a number <= 1, got 5",
    "optimizer.lr=1e40": "optimizer.lr must be a number <= 100, got 1e+40",
    "resume=maybe": "resume must be true or false, got 'maybe'",
    "resume=no": "resume must be true or false, got 'no'",
    "optimizer.momentum=0": "optimizer.nesterov=true needs optimizer.momentum > 0",
    "optimizer.momentum=1.5": "optimizer.momentum must be a number <= 1, got 1.5",
    "dataset.batch_size=1000": "dataset.batch_size=1000 is larger than the training set (64 examples)",
    "distributed_timeout_s=0": "distributed_timeout_s must be a number >= 1, got 0",
    "mixed_precision=fp8": "mixed_precision must be false, true, bf16 or fp16, got 'fp8'",
    "masking.dense_gradients=sometimes": "masking.dense_gradients must be true or false, got 'sometimes'",
}


@pytest.mark.parametrize("override", list(CASES))
def test_a_bad_value_is_one_line_and_writes_nothing(tmp_path: Path, override: str, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run, override)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and CASES[override] in error[0], error
    assert not run.exists() or not any(run.iterdir())


def test_a_checkpoints_path_that_is_a_file_is_refused_before_training(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")
    assert run_cli(train_command(run)) == 2
    assert "checkpoints must be a folder" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


def test_non_finite_numbers_become_null_so_the_summary_stays_json() -> None:
    summary = {"test_loss": float("nan"), "layers": {"a": float("inf")}, "values": [1.0, float("-inf")]}
    assert _json_safe(summary) == {"test_loss": None, "layers": {"a": None}, "values": [1.0, None]}


def test_without_plots_no_plot_path_is_printed(tmp_path: Path) -> None:
    summary = {
        "test_accuracy": 0.5, "test_top5": 0.9, "val_accuracy": 0.5, "density": 0.1, "active_weights": 1,
        "masked_weights": 10, "inference_flops": 0.1, "train_flops": 0.1, "wall_time_s": 1.0, "epochs": 1,
        "method": "SET", "dataset": "MNIST", "model": "m", "seed": 0,
    }  # fmt: skip
    assert "training_curves.png" not in format_results(summary, tmp_path, plots=False)
    assert "training_curves.png" in format_results(summary, tmp_path, plots=True)
