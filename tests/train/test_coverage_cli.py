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
    assert "weight coverage: 6 of 7 weight tensors masked, holding 13,504 of 14,400 weights (93.8%)" in printed.out
    assert "position.weight            28x32            896    6.2%  dense: Embedding weights are masked" in printed.out
    assert "attention.in_proj_weight   96x32          3,072   21.3%  masked" in printed.out
    assert "lstm.weight_hh_l0          128x32         4,096   28.4%  masked" in printed.out
    warnings = [line for line in printed.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "6.2% of the model's weights (896 of 14,400) stay dense" in warnings[0]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["active_weights"], summary["masked_weights"]) == (1350, 13_504)
    assert (summary["weight_nonzero"], summary["weight_total"]) == (1350 + 896, 14_400)
    assert summary["weight_density"] == (1350 + 896) / 14_400
    assert "all weights      0.1560 nonzero (2246 of 14400 weights" in printed.out


def test_a_fully_masked_model_gets_no_warning_and_equal_densities(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run)) == 0  # lenet300-100: every weight tensor is masked
    printed = capsys.readouterr()
    assert not [line for line in printed.err.splitlines() if line.startswith("warning: ")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weight_total"] == summary["masked_weights"]
    assert summary["weight_nonzero"] == summary["active_weights"]


def test_include_exclude_and_density_overrides_from_the_command_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    options = ["+masking.include=[position]", "+masking.exclude=[lstm]", "+masking.density_overrides={head:1.0}"]
    assert run_cli(train_command(run, *MODEL, *options)) == 0
    printed = capsys.readouterr()
    assert "weight coverage: 5 of 7 weight tensors masked, holding 6,208 of 14,400 weights (43.1%)" in printed.out
    assert "position.weight            28x32            896    6.2%  masked" in printed.out
    assert "lstm.weight_hh_l0          128x32         4,096   28.4%  dense: excluded" in printed.out
    assert not [line for line in printed.err.splitlines() if line.startswith("warning: ")], "excluded on purpose"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["active_weights"], summary["masked_weights"]) == (round(0.1 * 6208), 6208)
    assert summary["layer_density"]["head.weight"] == 1.0


def test_optional_keys_without_the_plus_say_how_to_set_them(tmp_path: Path, capsys) -> None:
    assert run_cli(train_command(tmp_path / "run", "masking.exclude=[lstm]")) == 2
    error = capsys.readouterr().err
    assert error == (
        "error: Could not override 'masking.exclude': it is optional and set with a leading +, as "
        "+masking.exclude=...\n"
    )
