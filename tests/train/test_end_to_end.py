"""Every masking option and every model trains a few steps on Synthetic data and writes its run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparselearning.train.loop import train

SUMMARY_KEYS = {
    "test_accuracy",
    "test_top5",
    "val_accuracy",
    "density",
    "inference_flops",
    "train_flops",
    "method",
    "dataset",
    "model",
    "seed",
    "epochs",
    "wall_time_s",
    "itop_rate",
    "layer_density",
}


@pytest.mark.parametrize("method", ["Dense", "Small_Dense", "Static", "SET", "SNFS", "RigL", "Pruning"])
def test_every_method_runs_and_summarises(small_config, tmp_path: Path, method: str) -> None:
    cfg = (
        small_config(f"masking={method}", "masking.interval=2", "optimizer.epochs=2")
        if method not in ("Dense", "Small_Dense", "Static")
        else small_config(f"masking={method}")
    )
    summary = train(cfg, tmp_path)
    assert set(summary) >= SUMMARY_KEYS
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["method"] == method
    assert saved["test_accuracy"] == summary["test_accuracy"]
    target = {"Dense": 1.0, "Small_Dense": (784 * 134 + 134 * 45 + 450) / (784 * 300 + 300 * 100 + 1000)}.get(
        method, 0.05
    )
    assert saved["density"] == pytest.approx(target, abs=1e-3)
    assert 0 < saved["inference_flops"] <= 1.0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "masking", "epoch", "step", "rng"} <= set(checkpoint)
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(line)["split"] for line in lines} == {"train", "val", "test", "masks"}
    assert any(path.name.startswith("events.out.tfevents") for path in (tmp_path / "tensorboard").iterdir())


def test_small_dense_narrows_the_model_and_counts_flops_against_the_full_one(small_config, tmp_path: Path) -> None:
    summary = train(small_config("masking=Small_Dense", "masking.density=0.25"), tmp_path)
    # widths 300 -> 150 and 100 -> 50: the first and last layers shrink by sqrt(d), the middle one by d
    full = 784 * 300 + 300 * 100 + 100 * 10
    small = 784 * 150 + 150 * 50 + 50 * 10
    assert summary["inference_flops"] == pytest.approx(small / full)
    assert summary["density"] == pytest.approx(small / full)


@pytest.mark.parametrize(
    ("model", "shape"),
    [("lenet300-100", "[1,28,28]"), ("lenet5", "[1,28,28]"), ("wrn-22-2", "[3,32,32]"), ("resnet50", "[3,32,32]")],
)
def test_every_model_trains(small_config, tmp_path: Path, model: str, shape: str) -> None:
    cfg = small_config(
        f"model={model}",
        f"dataset.shape={shape}",
        "dataset.train_size=16",
        "dataset.batch_size=8",
        "dataset.val_size=8",
        "dataset.test_size=8",
        "masking.interval=1",
    )
    summary = train(cfg, tmp_path)
    assert summary["density"] == pytest.approx(0.05, abs=2e-3)
    assert summary["steps"] == 2


def test_a_custom_model_through_target(small_config, tmp_path: Path) -> None:
    cfg = small_config(
        "~model", "+model._target_=sparselearning.models.MLP", "+model.widths=[784,50,10]", "+model.name=custom-mlp"
    )
    summary = train(cfg, tmp_path)
    assert summary["model"] == "sparselearning.models.MLP"
    assert summary["masked_weights"] == 784 * 50 + 50 * 10


def test_lottery_and_rigl_reinit_restart_from_a_finished_run(small_config, tmp_path: Path) -> None:
    pruned = tmp_path / "pruning"
    train(small_config("masking=Pruning", "masking.interval=1", "optimizer.epochs=2"), pruned)
    final_masks = torch.load(pruned / "checkpoints" / "last.pt", weights_only=True)["masking"]["masks"]
    lottery = tmp_path / "lottery"
    summary = train(small_config("masking=Lottery", f"masking.lottery_mask_path={pruned}"), lottery)
    restarted = torch.load(lottery / "checkpoints" / "last.pt", weights_only=True)["masking"]["masks"]
    assert all(torch.equal(restarted[name], final_masks[name]) for name in final_masks)
    assert summary["density"] == pytest.approx(0.05, abs=1e-3)
    reinit = train(
        small_config("masking=RigL_reinit", f"masking.lottery_mask_path={pruned}", "masking.interval=1"),
        tmp_path / "reinit",
    )
    assert reinit["density"] == pytest.approx(0.05, abs=1e-3)
