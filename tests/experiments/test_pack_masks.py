"""experiments/pack_masks.py: old one-byte masks become packed ones that unpack to exactly the same masks."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.pack_masks import main
from sparselearning.runs.masks import unpack_masks


def test_old_files_are_packed_once_and_unpack_exactly(tmp_path: Path, capsys) -> None:
    masks = {"fc.weight": torch.rand(30, 20) < 0.2, "conv.weight": torch.rand(4, 1, 3, 3) < 0.5}
    path = tmp_path / "run" / "final_masks.pt"
    path.parent.mkdir()
    torch.save({"masks": masks}, path)
    assert main([str(tmp_path)]) == 0
    packed = unpack_masks(torch.load(path, weights_only=True), str(path))
    assert all(torch.equal(packed[name], masks[name]) for name in masks)
    assert main([str(tmp_path)]) == 0
    assert "packed 0 of 1 final_masks.pt files (1 were packed already)" in capsys.readouterr().out


def test_a_mask_that_is_not_boolean_is_refused_and_kept(tmp_path: Path, capsys) -> None:
    path = tmp_path / "final_masks.pt"
    torch.save({"masks": {"fc.weight": torch.full((3, 3), 0.3)}}, path)
    before = path.read_bytes()
    assert main([str(tmp_path)]) == 2
    assert "neither 0 nor 1" in capsys.readouterr().err
    assert path.read_bytes() == before
