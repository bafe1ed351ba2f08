"""Where `sparselearning export` may write: never over the run it reads, never through a link, all or nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparselearning.export import command
from sparselearning.export.command import main
from tests.export.conftest import one_error_line


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A byte-for-byte copy of the tiny run, so refusals can be checked to change nothing."""
    copy = tmp_path / "run"
    for path, data in _snapshot(run_dir).items():
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_bytes(data)
    return copy


@pytest.mark.parametrize(
    ("source", "out", "message"),
    [
        ("run", "run/checkpoints/last.pt", "is the checkpoint being exported"),
        ("run/checkpoints/last.pt", "run/checkpoints/last.pt", "is the checkpoint being exported"),
        ("run", "run/checkpoints/../checkpoints/best.pt", "is a file of the run"),
        ("run", "run/config.yaml", "is a file of the run"),
        ("run/checkpoints/best.pt", "run/summary.json", "is a file of the run"),
    ],
)
def test_the_run_is_never_overwritten(
    source: str, out: str, message: str, run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(run_copy)
    assert main([str(tmp_path / source), "--out", str(tmp_path / out)]) == 2
    assert message in one_error_line(capsys)
    assert _snapshot(run_copy) == before


def test_the_run_is_recognised_through_a_link(run_copy: Path, tmp_path: Path, capsys) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(run_copy, target_is_directory=True)
    before = _snapshot(run_copy)
    assert main([str(run_copy), "--out", str(alias / "checkpoints" / "last.pt")]) == 2
    assert "is the checkpoint being exported" in one_error_line(capsys)
    assert _snapshot(run_copy) == before


def test_a_new_file_inside_the_run_is_allowed(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_copy / "export" / "model.sparse.pt"
    assert main([str(run_copy), "--out", str(out)]) == 0
    assert out.is_file() and "exported" in capsys.readouterr().out


@pytest.mark.parametrize("dangling", [False, True])
def test_an_out_that_is_a_link_is_refused(
    dangling: bool, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere.txt"
    if not dangling:
        target.write_text("keep me")
    link = tmp_path / "out.pt"
    link.symlink_to(target)
    assert main([str(run_dir), "--out", str(link)]) == 2
    assert "symbolic link" in one_error_line(capsys)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert (target.read_text() == "keep me") if not dangling else not target.exists()


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_partial_file(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier export")

    def fail_midway(model, path, *, spec=None, preprocessing=None):  # write part of the file, then fail (full disk)
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(command, "save_sparse", fail_midway)
    assert main([str(run_dir), "--out", str(out)]) == 2
    assert "No space left on device" in one_error_line(capsys)
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_an_out_that_is_not_a_regular_file_is_refused(run_dir: Path, tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    assert main([str(run_dir), "--out", str(fifo)]) == 2
    assert "not a regular file" in one_error_line(capsys)
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["pipe.pt"]
