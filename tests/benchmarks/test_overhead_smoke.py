"""The overhead benchmark runs end to end in its smoke mode, so it cannot rot."""

from __future__ import annotations

from benchmarks import overhead


def test_overhead_smoke(capsys) -> None:
    rows = overhead.main(["--smoke"])
    assert [row["model"] for row in rows] == ["LeNet-5", "MLP 784-2048-2048-10", "ViT-tiny"]
    for row in rows:
        assert row["dense_ms"] > 0 and row["masked_ms"] > 0 and row["update_ms"] > 0
    assert "(b) update/100 steps" in capsys.readouterr().out
