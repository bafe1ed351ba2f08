"""The mask-update cost benchmark runs end to end in its smoke mode, so it cannot rot."""

from __future__ import annotations

from benchmarks import update_cost


def test_update_cost_smoke(capsys) -> None:
    everything = update_cost.main(["--smoke"])
    in_training = [row for row in everything if row["growth_mode"] == "SNFS in training"]
    assert [row["weights"] for row in in_training] == [10_000, 100_000]
    assert all(row["update_ms"] > 0 and row["dense_step_ms"] > 0 for row in in_training)
    rows = [row for row in everything if row["growth_mode"] != "SNFS in training"]
    assert {row["weights"] for row in rows} == {10_000, 100_000}
    assert {row["growth_mode"] for row in rows} == set(update_cost.GROWTH_MODES)
    for row in rows:
        assert row["update_ms"] > 0 and row["dense_step_ms"] > 0
        assert abs(row["density_after"] - 0.1) < 0.01  # updates keep the density
    assert "absolute-gradient ms" in capsys.readouterr().out
