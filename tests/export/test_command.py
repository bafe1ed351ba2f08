"""`sparselearning export`: a real run directory to a sparse file, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sparselearning import cli
from sparselearning.export import command, load_sparse
from sparselearning.export.command import main
from tests.export.conftest import one_error_line


def test_export_a_run_directory(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lenet5.sparse.pt"
    assert main([str(run_dir), "--out", str(out), "--batch-size", "4"]) == 0
    line, *layers = capsys.readouterr().out.strip().splitlines()
    assert "ratio" in line and "max abs output difference" in line
    # One line per masked layer, saying what it became (LeNet-5: two convolutions, two Linear layers).
    assert [layer.split(":")[0].strip() for layer in layers] == ["conv1", "conv2", "fc3", "fc4"]
    assert all(" at density " in layer for layer in layers)
    for layer in layers[:2]:  # a convolution keeping every weight stays dense, the others are timed on the batch
        assert "(mask keeps every weight)" in layer or " ms vs sparse " in layer
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
    assert message in one_error_line(capsys)


def test_console_command_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparselearning", "export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no run directory or checkpoint at {tmp_path / 'nowhere'}"]


class _Shifted(torch.nn.Module):
    """What a broken export would reload: the sparse model's outputs plus `offset`."""

    def __init__(self, inner: torch.nn.Module, offset: float) -> None:
        super().__init__()
        self.inner, self.offset = inner, offset

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.inner(inputs) + self.offset


@pytest.mark.parametrize(("offset", "shown"), [(1e-2, "1.00e-02"), (float("nan"), "nan")])
def test_a_self_check_that_fails_removes_the_file_and_keeps_the_earlier_one(
    offset: float,
    shown: str,
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier export")
    monkeypatch.setattr(command, "load_sparse", lambda *args: _Shifted(load_sparse(*args), offset))
    assert main([str(run_dir), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "self-check failed" in line and f"by {shown}" in line and "allowed" in line
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(
    value: float, crafted_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def poison(state: dict) -> None:  # at a masked-off position, where the old export turned it into "nan"
        inactive = tuple((~state["masking"]["masks"]["fc3.weight"]).nonzero()[0].tolist())
        state["model"]["fc3.weight"][inactive] = value

    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier export")
    assert main([str(crafted_run(poison)), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "'fc3.weight'" in line and "not finite" in line
    assert out.read_bytes() == b"an earlier export"


def _set(path: list[str], value) -> object:
    def edit(state: dict) -> None:
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(["masking", "masks", "fc3.weight"], "dense"), "mask 'fc3.weight'"),
        (_set(["masking", "masks", "fc3.weight"], torch.full((500, 800), 0.5)), "mask 'fc3.weight' is not boolean"),
        (_set(["masking", "masks", "fc3.weight"], torch.ones(3, 3, dtype=torch.bool)), "mask 'fc3.weight' has shape"),
        (_set(["masking", "masks", 7], torch.ones(3, 3, dtype=torch.bool)), "mask 7"),
        (_set(["masking", "masks", "nowhere.weight"], torch.ones(3, dtype=torch.bool)), "mask 'nowhere.weight'"),
        (_set(["masking", "masks"], [1, 2]), "holds no masks"),
        (_set(["model", "fc3.weight"], "weights"), "'fc3.weight'"),
        (_set(["model", "fc3.weight"], torch.zeros(2, 2)), "'fc3.weight'"),
        (_set(["model", "fc3.weight"], torch.zeros(500, 800, dtype=torch.int64)), "'fc3.weight'"),
        (_set(["model", "extra.weight"], torch.zeros(2)), "extra.weight"),
        (lambda state: state["model"].pop("fc4.bias"), "fc4.bias"),
        (_set(["model", 3], torch.zeros(2)), "3"),
        (_set(["model"], [1]), "not a sparselearning training checkpoint"),
        (_set(["config"], 12), "no run configuration"),
    ],
)
def test_damaged_checkpoint_fields_are_one_line(
    edit, message: str, crafted_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.pt"
    assert main([str(crafted_run(edit)), "--out", str(out)]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_a_model_built_in_python_exports_a_target_run(crafted_run, tmp_path: Path) -> None:
    from sparselearning.export import export_checkpoint
    from sparselearning.models import LeNet5

    victim = tmp_path / "created_by_the_file"

    def custom_model(state: dict) -> None:
        config = yaml.safe_load(state["config"])
        config["model"] = {"_target_": "builtins.open", "_args_": [str(victim), "w"]}
        state["config"] = yaml.safe_dump(config)

    source = crafted_run(custom_model)
    template = LeNet5()
    before = {key: value.clone() for key, value in template.state_dict().items()}
    result = export_checkpoint(source, tmp_path / "model.pt", model=template, batch_size=4)
    assert not result["has_spec"] and result["max_abs_diff"] < 1e-5 and not victim.exists()
    assert all(torch.equal(before[key], value) for key, value in template.state_dict().items())
    reloaded = load_sparse(tmp_path / "model.pt", LeNet5())
    assert reloaded(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--batch-size", "100000000"], "--batch-size 100000000"),
        (["--batch-size", "0"], "--batch-size must be"),
        (["--seed", str(2**64)], "--seed must be"),
    ],
)
def test_bad_numbers_on_the_command_line(arguments: list[str], message: str, run_dir: Path, tmp_path: Path, capsys):
    assert main([str(run_dir), "--out", str(tmp_path / "out.pt"), *arguments]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "out.pt").exists()
