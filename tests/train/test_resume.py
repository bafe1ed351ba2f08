"""A run killed with SIGKILL and resumed ends bit-identical to one that never stopped; reruns only evaluate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from sparselearning.train.loop import train

ARGS = [
    "dataset=Synthetic",
    "dataset.train_size=2048",
    "dataset.batch_size=32",
    "dataset.val_size=64",
    "dataset.test_size=64",
    "model=lenet5",
    "masking=RigL",
    "masking.interval=20",
    "optimizer.epochs=5",
    "log_interval=16",
    "progress=false",
    "plots=false",
]


def _command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sparselearning", "train", *ARGS, f"hydra.run.dir={run_dir}"]


def _epoch_of(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["epoch"])
    except Exception:
        return 0


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    straight = tmp_path / "straight"
    subprocess.run(_command(straight), check=True, env=environment, capture_output=True, timeout=300)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        _command(interrupted), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = interrupted / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and _epoch_of(checkpoint) < 2:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= _epoch_of(checkpoint) < 5
    subprocess.run(_command(interrupted), check=True, env=environment, capture_output=True, timeout=300)

    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5 * 64
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["masking"]["masks"][k], b["masking"]["masks"][k]) for k in a["masking"]["masks"])
    assert (straight / "metrics.jsonl").read_text() == (interrupted / "metrics.jsonl").read_text()
    summary_a = json.loads((straight / "summary.json").read_text())
    summary_b = json.loads((interrupted / "summary.json").read_text())
    assert summary_a["test_accuracy"] == summary_b["test_accuracy"]


def test_running_a_finished_run_again_only_evaluates(small_config, tmp_path: Path) -> None:
    first = train(small_config(), tmp_path)
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    checkpoint_before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    second = train(small_config(), tmp_path)
    assert second["steps"] == first["steps"]
    assert second["test_accuracy"] == first["test_accuracy"]
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before, "no duplicated lines"
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == checkpoint_before
