"""A finished tiny training run, and crafted copies of its checkpoint, for the `sparselearning export` tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sparselearning.train.loop import train
from tests.train.conftest import SMALL, compose_config

CheckpointEdit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny RigL run (LeNet-5, 90% sparse) on Synthetic data."""
    directory = tmp_path_factory.mktemp("run")
    train(compose_config([*SMALL, "model=lenet5", "masking.density=0.1"]), directory)
    return directory


@pytest.fixture
def crafted_run(run_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """`crafted_run(edit, config_yaml=None)`: a run directory whose checkpoints/last.pt is the tiny run's,
    changed in place by `edit(state)`; with `config_yaml`, that text is written as the run's config.yaml."""

    def make(edit: CheckpointEdit | None = None, config_yaml: str | None = None) -> Path:
        state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        if edit is not None:
            edit(state)
        directory = tmp_path / "crafted_run"
        (directory / "checkpoints").mkdir(parents=True)
        torch.save(state, directory / "checkpoints" / "last.pt")
        if config_yaml is not None:
            (directory / "config.yaml").write_text(config_yaml)
        return directory

    return make


def run_config(run_dir: Path) -> dict[str, Any]:
    """The tiny run's configuration as plain data."""
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return yaml.safe_load(state["config"])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single `error: ...` line the command printed on stderr (and nothing else, no traceback)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    assert captured.out == "", captured.out
    return lines[0]
