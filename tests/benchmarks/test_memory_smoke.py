"""The memory benchmark runs end to end (one subprocess per contender) in its smoke mode."""

from __future__ import annotations

from benchmarks import memory


def test_memory_smoke(capsys) -> None:
    rows = memory.main(["--smoke"])
    by_kind = {row["kind"]: row for row in rows}
    assert set(by_kind) == set(memory.CONTENDERS)
    assert by_kind["dense"]["held_bytes_per_weight"] == 0
    # Bool masks cost exactly one byte per masked weight; the default mode adds float and ever-active masks.
    assert by_kind["masked_low_memory"]["masks_bytes_per_weight"] == 1.0
    assert by_kind["masked_low_memory"]["float_masks_bytes_per_weight"] == 0.0
    assert by_kind["masked"]["float_masks_bytes_per_weight"] > 3.9
    assert "peak RSS" in capsys.readouterr().out
