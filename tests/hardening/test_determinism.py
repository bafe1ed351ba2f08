"""Same command, same seed: the same masks, weights and metrics on CPU; another seed: other masks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparselearning.io import safe_load
from tests.hardening.conftest import run_cli, train_command

# Two epochs of 4 steps with a mask update every 2 steps (end_when defaults to 75% of the run: step 6).
METHODS = {
    "SET": ["masking=SET", "masking.interval=2", "optimizer.epochs=2"],  # random init, random growth
    "RigL": ["masking.interval=2", "optimizer.epochs=2"],  # ERK init, gradient growth
}


def _run(capsys, run_dir: Path, *overrides: str) -> dict:
    assert run_cli(train_command(run_dir, *overrides)) == 0, capsys.readouterr().err
    return safe_load(run_dir / "checkpoints" / "last.pt")


def _equal_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_command_and_seed_give_identical_runs(capsys, tmp_path, method) -> None:
    first = _run(capsys, tmp_path / "first", *METHODS[method])
    second = _run(capsys, tmp_path / "second", *METHODS[method])
    assert first["masking"]["mask_step"] == 8
    assert not _equal_tensors(first["masking"]["masks"], first["masking"]["ever_active"]), "the masks moved"
    assert _equal_tensors(first["masking"]["masks"], second["masking"]["masks"])
    assert _equal_tensors(first["masking"]["ever_active"], second["masking"]["ever_active"])
    assert _equal_tensors(first["model"], second["model"])
    metrics = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("first", "second")]
    assert metrics[0] == metrics[1]

    other = _run(capsys, tmp_path / "seed1", *METHODS[method], "seed=1")
    assert not _equal_tensors(first["masking"]["masks"], other["masking"]["masks"])
    assert (tmp_path / "seed1" / "metrics.jsonl").read_text() != metrics[0]
