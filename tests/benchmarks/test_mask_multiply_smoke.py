"""The mask-zeroing benchmark runs in its smoke mode and every contender zeroes exactly the inactive entries."""

from __future__ import annotations

import torch

from benchmarks import mask_multiply


def test_every_contender_zeroes_exactly_the_inactive_entries() -> None:
    generator = torch.Generator().manual_seed(1)
    mask = torch.rand(32, 32, generator=generator) < 0.2
    for name, (_, run) in mask_multiply.contenders(weight := torch.randn(32, 32) + 5.0, mask).items():
        weight.add_(5.0)  # refill: every entry nonzero again (the zeroed ones become exactly 5)
        run()
        assert torch.equal(weight != 0, mask), name


def test_mask_multiply_smoke(capsys) -> None:
    ratios = mask_multiply.main(["--smoke"])
    assert ratios["multiply by float mask"] == 1.0 and len(ratios) == 7
    assert "bytes/weight" in capsys.readouterr().out
