"""LayerStats: totals and the state round trip."""

from __future__ import annotations

import pytest

from sparselearning.stats import LayerStats


def test_counts_and_density() -> None:
    stats = LayerStats()
    assert stats.total_density == 0.0
    stats.set_counts({"a": 3, "b": 1}, {"a": 10, "b": 10})
    assert (stats.total_nonzero, stats.total_zero, stats.zeros_dict) == (4, 16, {"a": 7, "b": 9})
    assert stats.total_density == pytest.approx(0.2)


def test_round_trip_and_unknown_field() -> None:
    stats = LayerStats(total_removed=5, removed_dict={"a": 5})
    copy = LayerStats()
    copy.load_state_dict(stats.state_dict())
    assert copy == stats
    with pytest.raises(KeyError, match="unexpected LayerStats field"):
        copy.load_state_dict({"bogus": 1})


def test_model_weight_counts_are_measurements_not_state() -> None:
    stats = LayerStats()
    assert stats.model_weight_density == 0.0
    stats.set_model_counts(30, 120)
    assert (stats.model_weight_nonzero, stats.model_weight_total, stats.model_weight_density) == (30, 120, 0.25)
    assert "model_weight_nonzero" not in stats.state_dict() and "model_weight_total" not in stats.state_dict()
    assert stats == LayerStats(), "two stats of the same masks are equal whatever the weights"
