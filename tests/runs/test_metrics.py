"""Reading a run's metrics.jsonl as the run plots do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparselearning.errors import SparseLearningError
from sparselearning.runs.metrics import read_metrics


def test_records_come_back_in_order_and_a_cut_line_is_passed_over(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"split": "train", "step": 1, "loss": 2.5}\n{"split": "val", "step": 2, "accuracy": 0.5}\n{"spl')
    assert read_metrics(path) == [
        {"split": "train", "step": 1, "loss": 2.5},
        {"split": "val", "step": 2, "accuracy": 0.5},
    ]


def test_a_fifo_is_one_error_line_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    os.mkfifo(path)
    with pytest.raises(SparseLearningError, match="metrics.jsonl"):
        read_metrics(path)
