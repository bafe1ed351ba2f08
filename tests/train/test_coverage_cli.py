"""The command says what is masked and what stays dense, warns when much stays dense, and reports both densities."""

from __future__ import annotations

import json
from pathlib import Path

from tests.hardening.conftest import run_cli, train_command

MODEL = ["masking=SET", "masking.density=0.1", "+model._target_=tests.hardening.models.RowTransformer"]


def test_the_table_the_warning_and_both_densities(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run, *MODEL)) == 0
    printed = capsys.readouterr()
    assert "weight coverage: 3 of 6 weight tensors masked, holding 2,240 of 13,504 weights (16.6%)" in printed.out
    assert "attention.in_proj_weight   96x32          3,072   22.7%  dense: MultiheadAttention" in printed.out
    assert "lstm.weight_hh_l0          128x32         4,096   30.3%  dense: LSTM weights are not masked" in printed.out
    warnings = [line for line in printed.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "83.4% of the model's weights (11,264 of 13,504) stay dense" in warnings[0]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["active_weights"], summary["masked_weights"]) == (224, 2240)
    assert (summary["weight_nonzero"], summary["weight_total"]) == (224 + 11_264, 13_504)
    assert summary["weight_density"] == (224 + 11_264) / 13_504
    assert "all weights      0.8507 nonzero (11488 of 13504 weights" in printed.out


def test_a_fully_masked_model_gets_no_warning_and_equal_densities(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run)) == 0  # lenet300-100: every weight tensor is masked
    printed = capsys.readouterr()
    assert not [line for line in printed.err.splitlines() if line.startswith("warning: ")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weight_total"] == summary["masked_weights"]
    assert summary["weight_nonzero"] == summary["active_weights"]
