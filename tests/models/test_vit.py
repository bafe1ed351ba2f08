"""ViT-tiny: its shape, what Masking masks of it, Small-Dense narrowing, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.export import load_sparse
from sparselearning.models import VisionTransformer
from tests.hardening.conftest import run_cli, train_command


def test_every_weight_matrix_is_masked_and_only_the_token_tables_stay_dense() -> None:
    model = VisionTransformer()
    masking = methods.rigl(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), density=0.1)
    per_block = ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"]
    blocks = [f"blocks.layers.{i}.{name}" for i in range(4) for name in per_block]
    assert list(masking.mask_dict) == ["patch_embed.weight", *blocks, "head.weight"]
    assert masking.total_params == 49 * 64 + 4 * (3 * 64 * 64 + 64 * 64 + 2 * 64 * 128) + 64 * 10
    assert {r.name for r in masking.coverage if not r.masked} == {"class_token", "position"}
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_small_dense_narrows_to_a_multiple_of_the_heads() -> None:
    narrow = VisionTransformer(density=0.25)
    assert narrow.patch_embed.out_channels == 32 and narrow.blocks.layers[0].linear1.out_features == 64
    with pytest.raises(SparseLearningError, match="vit patch_size 5 must divide the image size 28"):
        VisionTransformer(patch_size=5)
    with pytest.raises(SparseLearningError, match="vit dim 30 must be a positive multiple of heads 4"):
        VisionTransformer(dim=30)


def test_vit_tiny_trains_reports_and_exports_from_the_command_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run, "model=vit-tiny", "model.depth=1", "masking.density=0.2")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["masked_weights"] == 49 * 64 + (3 * 64 * 64 + 64 * 64 + 2 * 64 * 128) + 64 * 10
    assert summary["active_weights"] == round(0.2 * summary["masked_weights"])
    assert 0.0 < summary["inference_flops"] < 1.0
    assert run_cli(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    assert "vit-tiny" in (tmp_path / "report" / "runs.csv").read_text()
    out = tmp_path / "vit.pt"
    assert run_cli(["export", str(run), "--out", str(out)]) == 0
    exported = load_sparse(out)
    images = torch.randn(2, 1, 28, 28)
    assert exported(images).shape == (2, 10)
    assert "exported" in capsys.readouterr().out
