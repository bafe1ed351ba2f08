"""The parts of `sparselearning report` on hand-made run folders: naming, statistics, discovery, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparselearning import cli
from sparselearning.errors import SparseLearningError
from sparselearning.report.collect import RunRecord, collect_runs, find_run_dirs, method_variant
from sparselearning.report.command import main
from sparselearning.report.figures import method_colours
from sparselearning.report.tables import build_tables, format_accuracy, format_fraction, mean_std


def _summary(method: str = "SET", accuracy: float = 0.5, density: float | None = 0.1, **extra) -> dict:
    return {
        "method": method,
        "dataset": "MNIST",
        "model": "lenet300-100",
        "seed": 0,
        "target_density": density,
        "density": 0.1 if density is None else density,
        "test_accuracy": accuracy,
        "train_flops": 0.2,
        "inference_flops": 0.1,
        "layer_density": {"fc.weight": 0.1},
        **extra,
    }


def _write_run(folder: Path, summary: dict | None, config: str = "masking:\n  name: SET\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_variant_names() -> None:
    assert method_variant("SET", "random", "none") == "SET"
    assert method_variant("RigL", "erdos-renyi-kernel", "none") == "RigL (ERK)"
    assert method_variant("RigL", "random", "momentum") == "RigL (momentum redist.)"
    assert method_variant("RigL", "erdos-renyi-kernel", "momentum") == "RigL (ERK) (momentum redist.)"
    # Redistribution is part of SNFS itself, so it does not rename SNFS; Dense has no masking settings.
    assert method_variant("SNFS", "random", "momentum") == "SNFS"
    assert method_variant("Dense", None, None) == "Dense"


def test_mean_and_sample_std_and_their_text() -> None:
    mean, std = mean_std([0.9, 0.92])
    assert mean == pytest.approx(0.91)
    assert std == pytest.approx(0.0141421356, rel=1e-6)  # ddof=1, not 0.01
    assert format_accuracy(mean, std, 2) == "91.00 ± 1.41 (n=2)"
    assert mean_std([0.5]) == (0.5, None)
    assert format_accuracy(0.5, None, 1) == "50.00 ± — (n=1)"
    assert format_fraction(0.155556) == "0.1556"
    assert format_fraction(None) == "—"


def test_tables_group_by_dataset_model_variant_and_density(tmp_path: Path) -> None:
    runs = [
        RunRecord(tmp_path / "a", _summary(accuracy=0.5)),
        RunRecord(tmp_path / "b", _summary(accuracy=0.7, seed=1)),
        RunRecord(tmp_path / "c", _summary("RigL", 0.6, 0.05), sparse_init="erdos-renyi-kernel"),
        RunRecord(tmp_path / "d", _summary(model="resnet50")),
        RunRecord(tmp_path / "e", _summary("Lottery", 0.4, None)),  # density from the saved masks
    ]
    tables = build_tables(runs)
    assert [t.title for t in tables] == ["MNIST / lenet300-100", "MNIST / resnet50"]
    first = tables[0]
    assert first.variants == ["Lottery", "RigL (ERK)", "SET"]
    assert first.densities == [0.05, 0.1]
    assert first.cells[("SET", 0.1)].n == 2
    rows = {row[0]: row[1:] for row in first.rows()}
    assert rows["SET"] == ["", "", "", format_accuracy(0.6, mean_std([0.5, 0.7])[1], 2), "0.2000", "0.1000"]
    assert rows["Lottery"][3] == "40.00 ± — (n=1)"
    markdown = first.markdown().splitlines()
    assert markdown[0].startswith("| method | d=0.05: test acc. (%) |")
    assert len(markdown) == 2 + 3


def test_discovery_skips_unfinished_and_broken_runs_and_run_outputs(tmp_path: Path) -> None:
    _write_run(tmp_path / "sweep" / "a" / "seed_0", _summary())
    _write_run(tmp_path / "sweep" / "a" / "seed_1", None)  # unfinished
    broken = _write_run(tmp_path / "sweep" / "b", None)
    (broken / "summary.json").write_text("{not json")
    # Folders that are not runs: a report written earlier, Hydra's own files, a stray YAML file.
    (tmp_path / "sweep" / "report").mkdir()
    (tmp_path / "sweep" / "report" / "runs.csv").write_text("x\n")
    (tmp_path / "sweep" / ".hydra").mkdir()
    (tmp_path / "sweep" / "notes").mkdir()
    (tmp_path / "sweep" / "notes" / "config.yaml").write_text("colour: blue\n")
    finished, unfinished = find_run_dirs(tmp_path / "sweep")
    assert finished == [tmp_path / "sweep" / "a" / "seed_0", broken]
    assert unfinished == [tmp_path / "sweep" / "a" / "seed_1"]

    collection = collect_runs([tmp_path / "sweep"])
    assert [run.run_dir for run in collection.runs] == [(tmp_path / "sweep" / "a" / "seed_0").resolve()]
    reasons = {item.run_dir.name: item.reason for item in collection.skipped}
    assert reasons["seed_1"] == "unfinished: no summary.json"
    assert reasons["b"].startswith("cannot read")
    # The same folder reached twice is read once.
    assert len(collect_runs([tmp_path / "sweep", tmp_path / "sweep" / "a"]).runs) == 1


def test_config_settings_are_read_for_the_variant(tmp_path: Path) -> None:
    config = "masking:\n  name: RigL\n  sparse_init: erdos-renyi-kernel\n  redistribution_mode: momentum\n"
    _write_run(tmp_path / "run", _summary("RigL"), config)
    (run,) = collect_runs([tmp_path / "run"]).runs
    assert (run.sparse_init, run.redistribution_mode) == ("erdos-renyi-kernel", "momentum")
    assert run.variant == "RigL (ERK) (momentum redist.)"


def test_colours_are_one_per_variant_and_independent_of_order() -> None:
    names = ["SET", "RigL (ERK)", "Dense", "RigL"]
    colours = method_colours(names)
    assert colours == method_colours(reversed(names)) == method_colours([*names, "SET"])
    assert list(colours) == sorted(names)
    assert colours["Dense"] == "#1f77b4"  # tab10's first colour for the first name in sorted order
    assert len(set(colours.values())) == 4
    many = method_colours(f"method {i:02d}" for i in range(15))
    assert len(set(many.values())) == 15
    assert len(set(method_colours(f"m{i:02d}" for i in range(30)).values())) == 30


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert captured.out == ""
    return lines[0]


def test_missing_path_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main([str(missing)]) == 2
    assert str(missing) in _one_error_line(capsys)


def test_folder_without_runs_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no runs found" in _one_error_line(capsys)
    _write_run(tmp_path / "only_unfinished", None)
    assert main([str(tmp_path)]) == 2
    assert "no finished runs" in _one_error_line(capsys)
    (tmp_path / "file.txt").write_text("x")
    assert main([str(tmp_path / "file.txt")]) == 2
    _one_error_line(capsys)


def test_usage_errors_are_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "PATH" in _one_error_line(capsys)
    assert main(["--bogus", "x"]) == 2
    _one_error_line(capsys)
    assert main(["--help"]) == 0
    assert "--out" in capsys.readouterr().out


def test_the_top_level_command_dispatches_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["report", str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    _one_error_line(capsys)


def test_errors_are_sparse_learning_errors(tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError, match="no such file"):
        collect_runs([tmp_path / "nowhere"])
    with pytest.raises(SparseLearningError, match="no path given"):
        collect_runs([])
