"""The export speed benchmark runs end to end in its smoke mode, so it cannot rot."""

from __future__ import annotations

from benchmarks import export_speed


def test_export_speed_smoke(capsys) -> None:
    rows = export_speed.main(["--smoke"])
    speed_rows = [row for row in rows if "model" in row]
    fan_in_rows = [row for row in rows if "cf_model" in row]
    assert [(row["cf_model"], row["batch"]) for row in fan_in_rows] == [("LeNet-300-100", 1), ("LeNet-300-100", 8)]
    for row in fan_in_rows:
        assert row["condensed_ms"] > 0 and row["picked_ms"] > 0 and row["max_abs_diff"] < 1e-5
    assert {row["model"] for row in speed_rows} == {"LeNet-300-100", "LeNet-5"}
    for row in speed_rows:
        assert row["dense_ms"] > 0 and row["sparse_ms"] > 0 and row["max_abs_diff"] < 1e-5
        assert row["limit"] == 4 / (8 * (1 - row["sparsity"]))  # int32 indices: 8 bytes per nonzero
    assert any("int64_over_int32" in row for row in rows)
    assert any(row.get("conv_sparse_ms", 0) > 0 for row in rows)
    assert "memory-bound" in capsys.readouterr().out
