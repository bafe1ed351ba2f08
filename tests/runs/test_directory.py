"""Run directories: new, empty or ours; one identity each; one trainer at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparselearning.errors import SparseLearningError
from sparselearning.runs import directory

SETTINGS = {"masking.name": "SET", "optimizer.lr": 0.1, "seed": 0, "world_size": 1}


def test_new_and_empty_folders_are_usable(tmp_path: Path) -> None:
    assert directory.check_usable(tmp_path / "new") is False
    assert directory.check_usable(tmp_path) is False


def test_a_folder_of_someone_elses_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(SparseLearningError, match=r"not a sparselearning run \(it holds thesis.tex\)"):
        directory.check_usable(tmp_path)


def test_a_run_directory_that_is_a_link_or_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(SparseLearningError, match="symbolic link"):
        directory.check_usable(tmp_path / "link")
    (tmp_path / "file").write_text("")
    with pytest.raises(SparseLearningError, match="not a directory"):
        directory.check_usable(tmp_path / "file")


def test_other_settings_are_refused_naming_them(tmp_path: Path) -> None:
    record = directory.identity_record(SETTINGS, "g", "d")
    (tmp_path / directory.IDENTITY).write_text(json.dumps(record))
    directory.check_identity(tmp_path, dict(SETTINGS))
    with pytest.raises(SparseLearningError, match=r"optimizer.lr 0.1 \(this run: 0.01\)"):
        directory.check_identity(tmp_path, {**SETTINGS, "optimizer.lr": 0.01})


def test_a_run_from_before_identities_is_matched_by_its_config(tmp_path: Path) -> None:
    (tmp_path / directory.CONFIG).write_text("seed: 0\nmasking:\n  name: SET\noptimizer:\n  lr: 0.1\n")
    directory.check_identity(tmp_path, {**SETTINGS, "masking.exclude": []})
    with pytest.raises(SparseLearningError, match="optimizer.lr"):
        directory.check_identity(tmp_path, {**SETTINGS, "optimizer.lr": 0.5})


def test_a_second_process_cannot_take_the_lock(tmp_path: Path) -> None:
    with directory.RunLock(tmp_path):
        probe = (
            "import sys; from sparselearning.runs.directory import RunLock\n"
            "try:\n    RunLock(sys.argv[1]).acquire()\nexcept Exception as e:\n    print(e); sys.exit(2)\n"
        )
        result = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
        assert result.returncode == 2
        assert "is in use: process" in result.stdout
    # Released: the next process gets it.
    with directory.RunLock(tmp_path):
        pass


def test_a_run_directory_holding_links_is_refused_before_any_work(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").symlink_to(outside)
    with pytest.raises(SparseLearningError, match=r"holds symbolic links \(summary.json\)"):
        directory.check_usable(run)
