"""The recurrent export benchmark runs in its smoke mode, and its step-by-step sparse LSTM computes the LSTM."""

from __future__ import annotations

from benchmarks import recurrent_export


def test_recurrent_export_smoke(capsys) -> None:
    rows = recurrent_export.main(["--smoke"])
    assert len(rows) == 1 and rows[0]["dense_ms"] > 0 and rows[0]["sparse_ms"] > 0
    assert rows[0]["max_difference"] < 1e-5
    assert "sparse/dense" in capsys.readouterr().out
