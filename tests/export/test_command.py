"""`sparselearning export`: a real run directory to a sparse file, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparselearning import cli
from sparselearning.export import load_sparse
from sparselearning.export.command import main
from sparselearning.train.loop import train
from tests.train.conftest import SMALL, compose_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny RigL run (LeNet-5, 90% sparse) on Synthetic data."""
    directory = tmp_path_factory.mktemp("run")
    train(compose_config([*SMALL, "model=lenet5", "masking.density=0.1"]), directory)
    return directory


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_export_a_run_directory(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lenet5.sparse.pt"
    assert main([str(run_dir), "--out", str(out), "--batch-size", "4"]) == 0
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and "ratio" in line and "max abs output difference" in line
    dense_bytes = int(line.split("dense ")[1].split(" bytes")[0])
    sparse_bytes = int(line.split("sparse ")[1].split(" bytes")[0])
    assert sparse_bytes == out.stat().st_size < dense_bytes
    difference = float(line.split("max abs output difference ")[1].split(" ")[0])
    assert difference < 1e-5
    payload = torch.load(out, weights_only=True)
    assert payload["model"]["name"] == "lenet5"
    model = load_sparse(out)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_export_a_checkpoint_file_through_the_top_level_cli(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "from_file.pt"
    with pytest.raises(SystemExit) as done:
        cli.main(["export", str(run_dir / "checkpoints" / "best.pt"), "--out", str(out)])
    assert done.value.code == 0 and out.is_file()
    assert "exported" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no run directory or checkpoint"),
        ("empty_dir", "without checkpoints/last.pt"),
        ("corrupt", "cannot read checkpoint"),
        ("not_a_checkpoint", "not a sparselearning training checkpoint"),
        ("unwritable", "cannot write"),
        ("bad_config", "cannot read the run configuration"),
        ("no_out", "--out"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    case: str, message: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.pt")
    source = str(run_dir)
    if case == "missing":
        source = str(tmp_path / "nowhere")
    elif case == "empty_dir":
        source = str(tmp_path)
    elif case == "corrupt":
        source = str(tmp_path / "last.pt")
        Path(source).write_bytes(b"\x00garbage")
    elif case == "not_a_checkpoint":
        source = str(tmp_path / "weights.pt")
        torch.save({"weights": torch.zeros(3)}, source)
    elif case == "bad_config":
        state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        state["config"] = "{{{: not yaml"
        source = str(tmp_path / "bad_config.pt")
        torch.save(state, source)
    elif case == "unwritable":
        (tmp_path / "a_file").write_text("")
        out = str(tmp_path / "a_file" / "out.pt")
    arguments = [source] if case == "no_out" else [source, "--out", out]
    assert main(arguments) == 2
    assert message in _one_error_line(capsys)


def test_console_command_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparselearning", "export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no run directory or checkpoint at {tmp_path / 'nowhere'}"]
