"""FSDP2 (`fully_shard`) on 2 CPU processes with gloo, under torchrun: masks of sharded parameters equal a single
process's masks, weights and momentum agree, masked weights are zero in every shard, a restore keeps everything,
and layouts other than FSDP2's are refused in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import torchrun_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("fsdp2")
    command = torchrun_command(2, "tests.distributed.fsdp2_worker", str(out))
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-6000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("method", ["rigl", "snfs", "set_"])
def test_sharded_masks_equal_a_single_process(results: list[dict], method: str) -> None:
    for rank in results:
        result = rank[method]
        assert result["updates"] == 2 and result["changed"] > 0, "the run included mask updates that moved masks"
        assert result["masks_equal"]
        assert result["weight_gap"] < 1e-12 and result["momentum_gap"] < 1e-12
        assert result["zero_outside"]
        assert result["restore_equal"] and result["restored_gap"] == 0.0
        assert result["density"] == pytest.approx(0.3, abs=1e-3)


def test_a_layout_other_than_fsdp2_is_refused_in_one_line(results: list[dict]) -> None:
    for rank in results:
        assert rank["replicated"] == (
            "SparseLearningError: 0.weight is a DTensor placed (Replicate(),) on a 1-D mesh; masks support "
            "FSDP2's layout only (Shard(0) on one mesh dimension)"
        )
