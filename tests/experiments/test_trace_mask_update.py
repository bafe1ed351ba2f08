"""The mask-update trace measures the step after the first update it is asked for, and refuses runs without one."""

from __future__ import annotations

import math

import pytest

from experiments.trace_mask_update import main, trace

TINY = [
    "dataset=Synthetic",
    "dataset.train_size=64",
    "dataset.val_size=16",
    "dataset.test_size=16",
    "dataset.batch_size=8",
    "optimizer.epochs=2",
    "masking.density=0.1",
    "plots=false",
]


def test_trace_reports_the_first_update_at_or_after_the_step_asked_for() -> None:
    result = trace([*TINY, "masking=RigL", "masking.interval=2"], after=3)
    assert result.update_step == 4
    assert result.grown == result.dropped, "RigL without redistribution regrows what it drops, layer by layer"
    assert sum(result.grown.values()) > 0
    assert all(result.largest_grown[name] > 0 for name, count in result.grown.items() if count)
    losses = (result.loss_before_update, result.loss_after_step, result.loss_without_grown)
    assert all(math.isfinite(loss) for loss in losses)
    assert result.loss_after_step != result.loss_without_grown


def test_a_run_without_mask_updates_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--after", "0", *TINY, "masking=Static"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no mask update at or after step 0")


def test_a_misspelt_override_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "masking=RigL", "masking.intervall=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "intervall" in err[0]
