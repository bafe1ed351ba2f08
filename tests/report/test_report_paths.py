"""Reports made at the root of a repository hold paths relative to it, so committed reports travel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.runs_on_disk import report, summary, write_run


def test_paths_below_the_current_directory_are_written_relative(tmp_path: Path, monkeypatch) -> None:
    write_run(tmp_path / "results" / "grid" / "runs" / "SET" / "seed_0", summary())
    monkeypatch.chdir(tmp_path)
    outcome = report(Path("results/grid/runs"), out=Path("results/grid/report"))
    assert outcome.status == 0
    assert [row["run_dir"] for row in outcome.csv_rows()] == ["results/grid/runs/SET/seed_0"]
    for name in ("report.md", "report.html", "runs.csv"):
        assert str(tmp_path) not in outcome.text(name), name
    assert "`results/grid/runs`" in outcome.text("report.md")


def test_paths_elsewhere_stay_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_run(tmp_path / "runs" / "SET" / "seed_0", summary())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    outcome = report(tmp_path / "runs", out=tmp_path / "report")
    assert [row["run_dir"] for row in outcome.csv_rows()] == [str(run)]
