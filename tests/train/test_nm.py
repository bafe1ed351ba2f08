"""`sparselearning train masking=NM`: composes, trains, leaves exact N:M weights in its checkpoint and summary,
refuses bad settings in one line, and a run killed and resumed ends bit-identical to one that never stopped."""

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

from sparselearning.errors import SparseLearningError
from sparselearning.funcs.n_m import is_exactly_n_m
from sparselearning.train.loop import train

MODEL = "model=lenet300-100"


@pytest.mark.parametrize(("n", "density"), [(2, 0.5), (1, 0.25)])
def test_nm_trains_and_its_checkpoint_holds_exact_n_m_weights(
    small_config, tmp_path: Path, n: int, density: float
) -> None:
    summary = train(small_config(MODEL, "masking=NM", f"masking.n={n}"), tmp_path)
    assert (summary["method"], summary["density"], summary["steps"]) == ("NM", density, 4)
    assert summary["inference_flops"] == density
    assert summary["train_flops"] == pytest.approx((2 * density + 1) / 3)  # sparse forward, dense weight gradient
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    weights = {name: checkpoint["model"][name] for name in checkpoint["masking"]["masks"]}
    assert sorted(weights) == ["layers.0.weight", "layers.2.weight", "layers.4.weight"]
    for name, weight in weights.items():
        assert is_exactly_n_m(weight, n, 4), name
        assert not is_exactly_n_m(checkpoint["masking"]["dense_weights"][name], n, 4)


def test_the_option_holds_the_table_s_defaults(small_config) -> None:
    cfg = small_config(MODEL, "masking=NM")
    assert dict(cfg.masking) == {"name": "NM", "density": None, "n": 2, "m": 4, "sparse_refined_decay": 0.0002}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["masking.density=0.1"], r"masking.density=0.1 conflicts with 2:4 sparsity"),
        (["masking.n=5"], r"masking.n=5, masking.m=4 is not an N:M pattern"),
        (["masking.n=0"], r"masking.n=0, masking.m=4 is not an N:M pattern"),
        (["masking.m=3"], r"layer 'layers.0.weight' has fan-in 784, not a multiple of m=3"),
        (
            ["masking.sparse_refined_decay=-1"],
            r"masking.sparse_refined_decay \(SR-STE lambda_w\) must be a number >= 0",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_line(small_config, tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(SparseLearningError, match=message) as refusal:
        train(small_config(MODEL, "masking=NM", *overrides), tmp_path)
    assert "\n" not in str(refusal.value)


def test_a_first_convolution_of_fan_in_25_is_refused_until_excluded(small_config, tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError, match=r"layer 'conv1.weight' has fan-in 25, not a multiple of m=4"):
        train(small_config("model=lenet5", "masking=NM"), tmp_path / "refused")
    summary = train(small_config("model=lenet5", "masking=NM", "+masking.exclude=[conv1]"), tmp_path / "excluded")
    densities = summary["layer_density"]
    assert "conv1.weight" not in densities and "conv2.weight" in densities
    assert set(densities.values()) == {0.5}


ARGS = [
    "dataset=Synthetic",
    "dataset.train_size=2048",
    "dataset.batch_size=32",
    "dataset.val_size=64",
    "dataset.test_size=64",
    MODEL,
    "masking=NM",
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
    environment = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_command(straight), check=True, env=environment, capture_output=True, timeout=300)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        _command(interrupted), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = interrupted / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and _epoch_of(checkpoint) < 2:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= _epoch_of(checkpoint) < 5
    subprocess.run(_command(interrupted), check=True, env=environment, capture_output=True, timeout=300)

    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5 * 64
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("masks", "dense_weights"):
        assert all(torch.equal(a["masking"][key][k], b["masking"][key][k]) for k in a["masking"][key])
    assert (straight / "metrics.jsonl").read_text() == (interrupted / "metrics.jsonl").read_text()
    summary_a = json.loads((straight / "summary.json").read_text())
    summary_b = json.loads((interrupted / "summary.json").read_text())
    assert summary_a["test_accuracy"] == summary_b["test_accuracy"]
