"""Checkpoints are checked field by field before a resume uses anything of them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.hardening.conftest import run_cli, snapshot, train_command


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert run_cli(train_command(run, "optimizer.epochs=2")) == 0
    return run


def _damaged_copy(finished: Path, tmp_path: Path, change) -> Path:
    """A copy of the finished run whose last.pt is changed by `change(state)` and whose summary is gone."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "identity.json"):
        (run / name).write_bytes((finished / name).read_bytes())
    state = torch.load(finished / "checkpoints" / "last.pt", weights_only=True)
    state["epoch"], state["step"] = 1, state["step"] // 2  # half way, so the resume would train on
    change(state)
    torch.save(state, run / "checkpoints" / "last.pt")
    return run


def _nan_weight(state: dict) -> None:
    first = next(iter(state["model"]))
    state["model"][first][0].fill_(math.nan)


CASES = {
    "nan weights": (_nan_weight, "holds NaN or infinity"),
    "epoch 1e9": (lambda s: s.update(epoch=10**9), "field 'epoch' must be a whole number in 0..2"),
    "float epoch": (lambda s: s.update(epoch=1e9), "field 'epoch' must be a whole number"),
    "negative step": (lambda s: s.update(step=-5), "field 'step' must be a whole number"),
    "step past its epoch": (lambda s: s.update(step=s["step"] + 1), "field 'step' is"),
    "model not a mapping": (lambda s: s.update(model=[1, 2]), "field 'model' must be a mapping"),
    "rng missing": (lambda s: s.update(rng={}), "field 'rng' holds no torch generator state"),
    "best accuracy 5": (lambda s: s.update(best_val_accuracy=5.0), "field 'best_val_accuracy'"),
    "wall time nan": (lambda s: s.update(wall_time_s=math.nan), "field 'wall_time_s'"),
    "other settings": (lambda s: s["settings"].update({"optimizer.lr": 9.0}), "optimizer.lr 9.0 (this run: 0.1)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_checkpoint_is_one_line_naming_the_field(finished: Path, tmp_path: Path, case: str, capsys) -> None:
    change, message = CASES[case]
    run = _damaged_copy(finished, tmp_path, change)
    before = snapshot(run)
    capsys.readouterr()
    assert run_cli(train_command(run, "optimizer.epochs=2")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert snapshot(run) == before
