"""The memory benchmark runs end to end (one subprocess per contender) in its smoke mode."""

from __future__ import annotations

from benchmarks import memory


def test_memory_smoke(capsys) -> None:
    rows = memory.main(["--smoke"])
    by_kind = {row["kind"]: row for row in rows}
    assert set(by_kind) == set(memory.CONTENDERS)
    assert by_kind["dense"]["held_bytes_per_weight"] == 0
    # Bool masks cost exactly one byte per masked weight; the default mode adds the packed ever-active record.
    assert by_kind["masked_low_memory"]["masks_bytes_per_weight"] == 1.0
    assert by_kind["masked_low_memory"]["held_bytes_per_weight"] == 1.0
    assert 1.0 < by_kind["masked"]["held_bytes_per_weight"] <= 1.125 + 1e-9
    # What an update adds is counted from the profiler's allocations: more than nothing held, and reported.
    assert by_kind["masked"]["update_bytes_per_weight"] > by_kind["masked"]["held_bytes_per_weight"]
    assert by_kind["dense"]["update_bytes_per_weight"] == 0
    assert "peak RSS" in capsys.readouterr().out
