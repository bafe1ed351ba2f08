"""Two-process gloo runs: every method keeps bit-identical masks and weights on all ranks; torchrun end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.distributed.workers import train_and_compare
from tests.helpers import torchrun_command


@pytest.mark.parametrize("method", ["rigl", "set_", "snfs", "pruning"])
def test_masks_and_weights_identical_on_every_rank(tmp_path: Path, method: str) -> None:
    mp.spawn(train_and_compare, args=(2, str(tmp_path / "rendezvous"), method, str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in (0, 1))
    assert all(torch.equal(first["masks"][k], second["masks"][k]) for k in first["masks"])
    assert all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"] if "running" not in k)


def test_verify_sync_names_the_first_layer_that_differs(tmp_path: Path) -> None:
    with pytest.raises(mp.ProcessRaisedException, match="masks differ between ranks .* first layer 'fc.weight'"):
        mp.spawn(train_and_compare, args=(2, str(tmp_path / "rendezvous"), "set_", str(tmp_path), True), nprocs=2)


SMALL = [
    "dataset=Synthetic",
    "dataset.train_size=256",
    "dataset.val_size=32",
    "dataset.test_size=32",
    "dataset.batch_size=16",
    "progress=false",
    "plots=false",
    "masking.interval=4",
    "verify_sync=true",
]


def _torchrun(processes: int, arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = torchrun_command(processes, "sparselearning", "train", *arguments)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_torchrun_trains_and_another_number_of_ranks_is_another_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _torchrun(2, [*SMALL, "optimizer.epochs=1", f"hydra.run.dir={run_dir}"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 256 // (16 * 2), "each rank takes its shard: half the steps per epoch"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["density"] == pytest.approx(0.05, abs=1e-3)
    assert summary["settings"]["world_size"] == 2
    assert first.stdout.count("test accuracy") == 1, "only rank 0 prints and writes"
    # One process computes something else (another global batch): the same directory refuses it.
    second = _torchrun(1, [*SMALL, "optimizer.epochs=1", f"hydra.run.dir={run_dir}"], tmp_path)
    assert second.returncode != 0
    assert "world_size 2 (this run: 1)" in second.stderr
    assert json.loads((run_dir / "summary.json").read_text()) == summary
