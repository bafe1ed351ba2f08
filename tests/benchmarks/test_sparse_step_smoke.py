"""The sparse-step benchmark runs end to end in its smoke mode, so it cannot rot."""

from __future__ import annotations

from benchmarks import sparse_step


def test_sparse_step_smoke(capsys) -> None:
    result = sparse_step.main(["--smoke"])
    steps = result["steps"]
    assert isinstance(steps, dict) and sorted(steps) == [0.01, 0.05]
    for row in steps.values():
        assert row["dense_ms"] > 0 and row["masked_ms"] > 0 and row["sparse_ms"] > 0
    equality = result["equality"]
    assert isinstance(equality, dict) and sorted(equality) == ["AdamW", "SGD"]
    for weights, differing, state, agreeing in equality.values():
        assert weights < 1e-4 and differing == 0 and state < 1e-4 and agreeing < 1e-4
    assert "targets: dense/sparse >= 3" in capsys.readouterr().out
