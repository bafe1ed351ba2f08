"""A stopped rank ends the job within `distributed_timeout_s`, with one line, instead of blocking for
PyTorch's 30-minute default."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import torchrun_command


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_stopped_rank_ends_the_job_within_the_timeout(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [
        *torchrun_command(2, "sparselearning", "train", "dataset=Synthetic", "dataset.train_size=4096"),
        *("dataset.batch_size=16", "dataset.val_size=32", "dataset.test_size=32", "optimizer.epochs=50"),
        *("log_interval=4", "progress=false", "plots=false", "distributed_timeout_s=5", f"hydra.run.dir={run}"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "metrics.jsonl").exists():
            time.sleep(0.1)
        workers = _children(process.pid)
        assert len(workers) == 2, "torchrun did not start two workers"
        os.kill(workers[1], signal.SIGSTOP)
        stopped_at = time.time()
        while _alive(workers[0]) and time.time() - stopped_at < 60:
            time.sleep(0.2)
        waited = time.time() - stopped_at
        assert not _alive(workers[0]), "rank 0 still waits for the stopped rank after 60 s"
        assert waited < 40
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, error = process.communicate(timeout=120)
    assert process.returncode != 0
    lines = [line for line in error.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "a collective operation failed (another process stopped or died?)" in lines[0]
    assert "Timed out" in lines[0]
