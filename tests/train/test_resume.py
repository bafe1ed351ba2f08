"""A run killed with SIGKILL and resumed ends bit-identical to one that never stopped; reruns only evaluate."""

from __future__ import annotations

from pathlib import Path

from sparselearning.train.loop import train
from tests.train.kill_and_resume import SYNTHETIC_RUN, assert_identical, kill_and_resume


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    pair = kill_and_resume([*SYNTHETIC_RUN, "model=lenet5", "masking=RigL", "masking.interval=20"], tmp_path)
    assert_identical(pair)


def test_running_a_finished_run_again_only_evaluates(small_config, tmp_path: Path) -> None:
    first = train(small_config(), tmp_path)
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    checkpoint_before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    second = train(small_config(), tmp_path)
    assert second["steps"] == first["steps"]
    assert second["test_accuracy"] == first["test_accuracy"]
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before, "no duplicated lines"
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == checkpoint_before
