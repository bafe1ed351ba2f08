"""Safe run-file I/O: atomic writes that keep the old file, no writes through links, no blocking reads."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from sparselearning.errors import SparseLearningError
from sparselearning.runs import files


def test_write_text_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "run" / "summary.json"
    files.write_text(target, "one", tmp_path / "run")
    files.write_text(target, "two", tmp_path / "run")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_a_planted_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").symlink_to(outside)
    with pytest.raises(SparseLearningError, match="symbolic link"):
        files.write_text(run / "config.yaml", "overwritten", run)
    assert outside.read_text() == "keep me"


def test_a_linked_folder_below_the_run_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "plots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SparseLearningError, match="plots is a symbolic link"):
        files.write_text(run / "plots" / "a.png", "x", run)
    assert list(elsewhere.iterdir()) == []


def test_appending_through_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.log"
    outside.write_text("")
    (tmp_path / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(SparseLearningError, match="symbolic link"):
        files.open_append(tmp_path / "metrics.jsonl", tmp_path)
    assert outside.read_text() == ""


def test_a_write_that_fails_keeps_the_earlier_file(tmp_path: Path) -> None:
    target = tmp_path / "final_masks.pt"
    target.write_bytes(b"earlier good content")

    def failing(stream) -> None:
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(SparseLearningError, match="No space left on device; the earlier file is kept"):
        files.write_atomic(target, failing)
    assert target.read_bytes() == b"earlier good content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final_masks.pt"]


def test_a_file_size_limit_keeps_the_earlier_file(tmp_path: Path) -> None:
    target = tmp_path / "final_masks.pt"
    target.write_bytes(b"x" * 100)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(SparseLearningError, match="earlier file is kept"):
            files.write_atomic(target, lambda stream: stream.write(b"y" * 100_000))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert target.read_bytes() == b"x" * 100


def test_reading_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    with pytest.raises(SparseLearningError, match="not a regular file"):
        files.read_text(fifo)


def test_reading_refuses_oversized_files(tmp_path: Path) -> None:
    big = tmp_path / "config.yaml"
    big.write_text("a" * 200)
    with pytest.raises(SparseLearningError, match="more than the 100 allowed"):
        files.read_text(big, limit=100)


def test_yaml_is_plain_data_without_interpolation_or_tags(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SECRET_FOR_TEST", "leaked")
    path = tmp_path / "config.yaml"
    path.write_text("a: ${oc.env:SECRET_FOR_TEST}\nb: 1\n")
    assert files.read_yaml_data(path) == {"a": "${oc.env:SECRET_FOR_TEST}", "b": 1}
    path.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SparseLearningError, match="cannot read"):
        files.read_yaml_data(path)


def test_yaml_aliases_are_refused_so_nested_ones_cannot_explode() -> None:
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(SparseLearningError, match=r"^cannot read the bomb: YAML aliases"):
        files.load_yaml_data("\n".join(levels), "the bomb")


def test_written_files_get_the_ordinary_mode_not_mkstemps_private_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files, "_UMASK", 0o022)  # the process umask, read once when the module is imported
    files.write_text(tmp_path / "summary.json", "{}")
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644
