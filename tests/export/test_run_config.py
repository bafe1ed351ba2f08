"""A run's configuration is data to export: it never names code to run and is never interpolated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparselearning.export.command import main
from tests.export.conftest import one_error_line, run_config


def _hostile_models(victim: Path) -> dict[str, dict[str, Any]]:
    """`model` sections that call a function with a path of the test's choosing when instantiated."""
    return {
        "open": {"_target_": "builtins.open", "_args_": [str(victim), "w"]},
        "makedirs": {"_target_": "os.makedirs", "_args_": [str(victim)]},
        "touch": {"_target_": "pathlib.Path.touch", "self": {"_target_": "pathlib.Path", "_args_": [str(victim)]}},
    }


def _config_text(run_dir: Path, **sections: Any) -> str:
    config = run_config(run_dir)
    config.update(sections)
    return yaml.safe_dump(config)


@pytest.mark.parametrize("payload", ["open", "makedirs", "touch"])
@pytest.mark.parametrize("where", ["checkpoint", "config.yaml"])
def test_a_model_target_in_the_config_runs_nothing(
    payload: str,
    where: str,
    run_dir: Path,
    crafted_run: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    victim = tmp_path / "created_by_the_file"
    text = _config_text(run_dir, model=_hostile_models(victim)[payload])
    if where == "checkpoint":
        source = crafted_run(lambda state: state.update(config=text))
    else:
        source = crafted_run(lambda state: state.pop("config"), config_yaml=text)
    out = tmp_path / "out.pt"
    assert main([str(source), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "model._target_" in line and "export_checkpoint" in line and "model=" in line
    assert not victim.exists() and not out.exists()


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("model", "name", "lenet5"), ("dataset", "name", "Synthetic"), ("masking", "name", "RigL")],
)
def test_interpolations_are_never_resolved(
    section: str,
    key: str,
    value: str,
    run_dir: Path,
    crafted_run: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Resolved, the environment variable would give the right value and the export would succeed.
    monkeypatch.setenv("SL_EXPORT_TEST_VALUE", value)
    config = run_config(run_dir)
    config[section][key] = "${oc.env:SL_EXPORT_TEST_VALUE}"
    source = crafted_run(lambda state: state.update(config=yaml.safe_dump(config)))
    out = tmp_path / "out.pt"
    assert main([str(source), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"{section}.{key}" in line and "${oc.env:SL_EXPORT_TEST_VALUE}" in line and "interpolation" in line
    assert not out.exists()


def test_interpolations_in_fields_export_does_not_use_are_harmless(
    run_dir: Path, crafted_run: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run_config(run_dir)
    config["exp_name"] = "${oc.env:SL_EXPORT_TEST_UNSET}"
    config["dataset"]["root"] = "${oc.env:SL_EXPORT_TEST_UNSET}"
    source = crafted_run(lambda state: state.update(config=yaml.safe_dump(config)))
    assert main([str(source), "--out", str(tmp_path / "out.pt")]) == 0
    assert "exported" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(model=["lenet5"]), "has no model.name"),
        (lambda c: c["dataset"].pop("name"), "has no dataset.name"),
        (lambda c: c["dataset"].update(shape=[1, 28]), "dataset.shape"),
        (lambda c: c["dataset"].update(shape=[1, 100000, 100000]), "dataset.shape"),
        (lambda c: c["dataset"].update(num_classes="ten"), "dataset.num_classes"),
        (lambda c: c["dataset"].update(name="ImageNet"), "unknown dataset 'ImageNet'"),
        (lambda c: c["model"].update(name="os.system"), "unknown model 'os.system'"),
        (lambda c: c["model"].update(name=["lenet5"]), "model.name"),
    ],
)
def test_bad_configuration_fields_are_one_line(
    change: Callable[[dict[str, Any]], None],
    message: str,
    run_dir: Path,
    crafted_run: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = run_config(run_dir)
    change(config)
    source = crafted_run(lambda state: state.update(config=yaml.safe_dump(config)))
    assert main([str(source), "--out", str(tmp_path / "out.pt")]) == 2
    assert message in one_error_line(capsys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: !!python/object/apply:os.getcwd []\n", "cannot read the run configuration"),
        ("a: &a [1, 2]\nmodel: {name: wrn-22-2, depth: *a}\n", "alias"),
        ("model: {name: wrn-22-2, depth: [" + ", ".join(["1"] * 10_050) + "]}\n", "more than 10000 values"),
    ],
)
def test_yaml_tags_aliases_and_huge_model_sections_are_refused(
    text: str, message: str, crafted_run: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text += "dataset: {name: Synthetic, num_classes: 10, shape: [1, 28, 28]}\nmasking: {name: RigL}\n"
    source = crafted_run(lambda state: state.update(config=text))
    assert main([str(source), "--out", str(tmp_path / "out.pt")]) == 2
    assert message in one_error_line(capsys)
