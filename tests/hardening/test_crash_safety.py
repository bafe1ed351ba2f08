"""SIGKILL at random moments, one of them inside a checkpoint write, then resume: the run ends exactly like one
that never stopped (weights, masks, optimizer state and metrics.jsonl, bit for bit)."""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sparselearning.io import safe_load
from sparselearning.train import loop
from sparselearning.train.loop import train
from tests.train.conftest import SMALL, compose_config

# lenet5 on 16x16 images (the smallest it takes): 512 / 32 = 16 steps per epoch, 8 epochs, a RigL update every
# 4 steps, so masks keep changing across every kill.
ARGS = [
    "dataset=Synthetic",
    "dataset.train_size=512",
    "dataset.batch_size=32",
    "dataset.val_size=64",
    "dataset.test_size=64",
    "dataset.shape=[1,16,16]",
    "model=lenet5",
    "masking=RigL",
    "masking.interval=4",
    "optimizer.epochs=8",
    "log_interval=4",
    "progress=false",
    "plots=false",
]
EPOCHS, STEPS_PER_EPOCH = 8, 16
SAVE_DELAY_S = 0.5  # the fault-injection pause in atomic_save, between fsync and rename


def _start(run_dir: Path) -> subprocess.Popen:
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "SPARSELEARNING_SAVE_DELAY_S": str(SAVE_DELAY_S),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sparselearning", "train", *ARGS, f"hydra.run.dir={run_dir}"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {what}; make it longer")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _kill(process: subprocess.Popen, pause: float) -> None:
    time.sleep(pause)
    assert process.poll() is None, "the run ended before the kill; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    steps = [0]
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError):
            continue  # a line being written
    return max(steps)


def _epoch(checkpoint: Path) -> int:
    """The epoch of the checkpoint; the file must always be readable once it exists (atomic replace)."""
    return int(safe_load(checkpoint)["epoch"]) if checkpoint.exists() else 0


def _temporaries(checkpoints: Path) -> set[Path]:
    return set(checkpoints.glob(".last.pt.*.tmp"))


def _assert_same_state(a: dict, b: dict) -> None:
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (EPOCHS, EPOCHS * STEPS_PER_EPOCH)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("masks", "ever_active"):
        assert a["masking"][key].keys() == b["masking"][key].keys()
        assert all(torch.equal(a["masking"][key][k], b["masking"][key][k]) for k in a["masking"][key])
    assert a["masking"]["mask_step"] == b["masking"]["mask_step"]
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[i]["momentum_buffer"], state_b[i]["momentum_buffer"]) for i in state_a)


def test_three_sigkills_one_mid_write_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    straight = tmp_path / "straight"
    train(compose_config(ARGS), straight)  # in this process (one torch thread, like the subprocesses)

    run = tmp_path / "interrupted"
    checkpoints = run / "checkpoints"
    last = checkpoints / "last.pt"

    # 1: at a random step of the first epochs, wherever it lands (mid-epoch, validation, or a write).
    process = _start(run)
    target = rng.randint(6, 2 * STEPS_PER_EPOCH)
    _wait_for(lambda: _logged_step(run) >= target, process, f"step {target}")
    _kill(process, rng.uniform(0.0, 0.2))
    first = _epoch(last)
    assert first < EPOCHS

    # 2: during a write of last.pt: a new temporary file exists, and the kill lands inside the rename pause.
    already = _temporaries(checkpoints)
    process = _start(run)
    _wait_for(lambda: bool(_temporaries(checkpoints) - already), process, "a checkpoint write")
    _kill(process, rng.uniform(0.0, SAVE_DELAY_S / 3))
    (partial,) = _temporaries(checkpoints) - already
    assert partial.exists(), "the kill came after the rename; it was meant to land inside the write"
    second = _epoch(last)  # the previous checkpoint, intact
    assert first <= second < EPOCHS

    # 3: a random moment within about one epoch of the resumed run.
    process = _start(run)
    _wait_for(lambda: _epoch(last) > second, process, "a new checkpoint")
    _kill(process, rng.uniform(0.0, 1.0))
    assert _epoch(last) < EPOCHS

    process = _start(run)
    _, error = process.communicate(timeout=180)
    assert process.returncode == 0, error.decode()

    _assert_same_state(safe_load(straight / "checkpoints" / "last.pt"), safe_load(last))
    assert (run / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()
    summaries = [json.loads((path / "summary.json").read_text()) for path in (straight, run)]
    assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"]
    # What a kill mid-write leaves behind: temporary files (of last.pt or best.pt) that nothing reads.
    leftovers = {path.name for path in checkpoints.iterdir()} - {"last.pt", "best.pt"}
    assert partial.name in leftovers
    assert all(re.fullmatch(r"\.(last|best)\.pt\..+\.tmp", name) for name in leftovers), leftovers


class _Killed(BaseException):
    """Stands for SIGKILL inside one process: nothing after the raise point runs."""


def test_kill_while_resume_rewrites_metrics_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    arguments = [*SMALL, "optimizer.epochs=2"]
    train(compose_config(arguments), tmp_path / "straight")

    run = tmp_path / "interrupted"
    save = loop.Run.save

    def save_then_die(self, best: bool) -> None:
        save(self, best)
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(loop.Run, "save", save_then_die)
        with pytest.raises(_Killed):
            train(compose_config(arguments), run)  # dies right after epoch 1's checkpoint

    real_open = io.open

    def die_on_rewriting_metrics(file, mode="r", *args, **kwargs):
        """A kill the moment the resume opens metrics.jsonl (or a temporary named after it) to rewrite it."""
        if "w" in mode and isinstance(file, (str, os.PathLike)) and "metrics.jsonl" in Path(file).name:
            real_open(file, mode, *args, **kwargs).close()  # what opening for writing has done when the kill lands
            raise _Killed
        return real_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as patch, contextlib.suppress(_Killed):
        patch.setattr(io, "open", die_on_rewriting_metrics)
        patch.setattr(builtins, "open", die_on_rewriting_metrics)
        train(compose_config(arguments), run)
    train(compose_config(arguments), run)
    assert (run / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()
