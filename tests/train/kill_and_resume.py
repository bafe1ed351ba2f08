"""Train a run straight, and the same run killed with SIGKILL after its second epoch and started again: what
the resume tests of every method compare (shared so each method's test states only what it checks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SYNTHETIC_RUN = [
    "dataset=Synthetic",
    "dataset.train_size=2048",
    "dataset.batch_size=32",
    "dataset.val_size=64",
    "dataset.test_size=64",
    "optimizer.epochs=5",
    "log_interval=16",
    "progress=false",
    "plots=false",
]
STEPS = 5 * 64  # 5 epochs of 2048 / 32 batches


@dataclass
class Pair:
    """The last checkpoint, metrics and summary of the straight run and of the killed-and-resumed one."""

    straight: dict[str, Any]
    resumed: dict[str, Any]
    straight_metrics: str
    resumed_metrics: str
    straight_summary: dict[str, Any]
    resumed_summary: dict[str, Any]


def _epoch_of(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["epoch"])
    except Exception:
        return 0


def kill_and_resume(overrides: list[str], folder: Path, environment: dict[str, str] | None = None) -> Pair:
    """Run `sparselearning train` with `overrides` straight in `folder/straight`; run it again in
    `folder/interrupted`, SIGKILL it once a checkpoint of epoch 2 exists, and run it once more to finish."""
    env = {**os.environ, "PYTHONHASHSEED": "0", **(environment or {})}

    def command(run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "sparselearning", "train", *overrides, f"hydra.run.dir={run_dir}"]

    straight, interrupted = folder / "straight", folder / "interrupted"
    subprocess.run(command(straight), check=True, env=env, capture_output=True, timeout=300)
    process = subprocess.Popen(command(interrupted), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = interrupted / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and _epoch_of(checkpoint) < 2:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= _epoch_of(checkpoint) < 5
    subprocess.run(command(interrupted), check=True, env=env, capture_output=True, timeout=300)
    return Pair(
        torch.load(straight / "checkpoints" / "last.pt", weights_only=True),
        torch.load(checkpoint, weights_only=True),
        (straight / "metrics.jsonl").read_text(),
        (interrupted / "metrics.jsonl").read_text(),
        json.loads((straight / "summary.json").read_text()),
        json.loads((interrupted / "summary.json").read_text()),
    )


def assert_identical(pair: Pair, masking_keys: tuple[str, ...] = ("masks",)) -> None:
    """The resumed run ended bit-identical to the straight one: step, weights, the masking state's
    `masking_keys`, every metrics line and the test accuracy."""
    a, b = pair.straight, pair.resumed
    assert a["step"] == b["step"] == STEPS
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in masking_keys:
        assert all(torch.equal(a["masking"][key][k], b["masking"][key][k]) for k in a["masking"][key]), key
    assert pair.straight_metrics == pair.resumed_metrics
    assert pair.straight_summary["test_accuracy"] == pair.resumed_summary["test_accuracy"]
