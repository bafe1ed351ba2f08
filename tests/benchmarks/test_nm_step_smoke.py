"""The N:M step benchmark runs in its smoke mode, and the two mask rules it times give the same mask."""

from __future__ import annotations

import torch

from benchmarks import nm_step


def test_both_mask_rules_agree() -> None:
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    weight[0, :4] = 1.0  # ties go to the earlier position in both
    masks = [rule() for rule in nm_step.mask_contenders(weight, 2, 4).values()]
    assert torch.equal(masks[0], masks[1])


def test_nm_step_smoke(capsys) -> None:
    results = nm_step.main(["--smoke"])
    assert set(results["tiny"]) == {"dense", "NM 2:4", "NM 1:4"} and results["tiny"]["dense"] == 1.0
    assert set(results["mask"]) == {"rank (nm_mask)", "stable sort"}
    assert "vs dense" in capsys.readouterr().out
