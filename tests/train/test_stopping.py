"""SIGTERM and SIGINT save a checkpoint at the next step, end with one line and 128 + the signal's number,
and running the same command again ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

STEPS_PER_EPOCH, EPOCHS = 48, 3
ARGS = [
    "dataset=Synthetic",
    "dataset.train_size=1536",
    "dataset.batch_size=32",
    "dataset.val_size=64",
    "dataset.test_size=64",
    "masking=RigL",
    "masking.interval=20",
    f"optimizer.epochs={EPOCHS}",
    "log_interval=8",
    "progress=false",
    "plots=false",
]
ENVIRONMENT = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def _command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sparselearning", "train", *ARGS, f"hydra.run.dir={run_dir}"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    subprocess.run(_command(run), check=True, env=ENVIRONMENT, capture_output=True, timeout=300)
    return run


def _step_of(metrics: Path) -> int:
    try:
        return max(json.loads(line).get("step", 0) for line in metrics.read_text().splitlines())
    except (OSError, ValueError):
        return 0


@pytest.mark.parametrize("kind", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_mid_epoch_and_the_resumed_run_equals_an_uninterrupted_one(
    straight: Path, tmp_path: Path, kind: signal.Signals
) -> None:
    environment = ENVIRONMENT
    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        _command(stopped), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while (
        time.time() < deadline and process.poll() is None and _step_of(stopped / "metrics.jsonl") < STEPS_PER_EPOCH + 8
    ):
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be stopped; make it longer"
    process.send_signal(kind)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + kind
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stopped: stopped by {kind.name} at step ")
    saved = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == saved["epoch"] * STEPS_PER_EPOCH + saved.get("batch", 0)
    assert 0 < saved["step"] < EPOCHS * STEPS_PER_EPOCH
    assert not (stopped / "summary.json").exists()

    subprocess.run(_command(stopped), check=True, env=environment, capture_output=True, timeout=300)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == EPOCHS * STEPS_PER_EPOCH
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["masking"]["masks"][k], b["masking"]["masks"][k]) for k in a["masking"]["masks"])
    assert (straight / "metrics.jsonl").read_text() == (stopped / "metrics.jsonl").read_text()
