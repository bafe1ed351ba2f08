"""A user's own data through the whole command line: `sparselearning train` on an `.npz` file and on a `_target_`
Dataset, then `report` and `export` of that run; a run directory made with other data is refused, naming both
fingerprints; `_target_` keys other than the allowed ones are refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparselearning.data.synthetic import make_synthetic
from sparselearning.export import load_sparse
from sparselearning.export.command import main as export_main
from sparselearning.report.command import main as report_main
from tests.hardening.conftest import run_cli

# The small run of tests.train.conftest.SMALL, without its Synthetic dataset.
SMALL = ["optimizer.epochs=1", "log_interval=2", "progress=false", "plots=false", "dataset.batch_size=16"]
CUSTOM = [
    "dataset=Custom",
    "dataset.train._target_=tests.data.custom_target.features",
    "dataset.test._target_=tests.data.custom_target.features",
    "+dataset.test.split=test",
    "+dataset.val._target_=tests.data.custom_target.features",
    "+dataset.val.split=val",
    "+dataset.val.size=16",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_npz(path: Path, seed: int = 0) -> Path:
    """A small learnable image dataset (uint8 (N, 8, 8), 4 classes) as an .npz file without validation arrays."""
    tensors = make_synthetic(num_classes=4, shape=(1, 8, 8), train=80, val=1, test=32, seed=seed)
    np.savez(
        path,
        train_x=tensors["train_images"][:, 0].numpy(),
        train_y=tensors["train_labels"].numpy(),
        test_x=tensors["test_images"].numpy(),
        test_y=tensors["test_labels"].numpy(),
    )
    return path


def _train(run_dir: Path, *overrides: str) -> int:
    return run_cli(["train", *SMALL, *overrides, f"hydra.run.dir={run_dir}"])


def _report_and_export(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> torch.nn.Module:
    assert report_main([str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report").is_dir()
    out = tmp_path / "model.sparse.pt"
    assert export_main([str(run_dir), "--out", str(out), "--batch-size", "4"]) == 0
    assert "input preprocessing recorded" in capsys.readouterr().out
    return load_sparse(out)


def test_an_npz_file_trains_reports_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_npz(tmp_path / "data.npz")
    run_dir = tmp_path / "run"
    assert _train(run_dir, "dataset=Arrays", f"dataset.path={data}") == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    identity = json.loads((run_dir / "identity.json").read_text())
    fingerprint = identity["settings"]["dataset.fingerprint"]
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 64
    assert summary["settings"]["dataset.fingerprint"] == fingerprint and summary["dataset"] == "Arrays"
    assert "dataset.path" not in identity["settings"]  # where the file lies is not what it holds
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["data"]["input_shape"] == [1, 8, 8] and state["data"]["num_classes"] == 4
    assert state["data"]["input_kind"] == "uint8" and state["data"]["fingerprint"] == fingerprint

    model = _report_and_export(run_dir, tmp_path, capsys)
    assert model.preprocessing.input_kind == "uint8" and model.preprocessing.input_shape == (1, 8, 8)
    assert list(model.preprocessing.mean) == state["data"]["mean"]
    pixels = torch.from_numpy(np.load(data)["test_x"])  # (N, 8, 8) uint8: one channel
    assert model(model.preprocessing(pixels)).shape == (32, 4)


def test_a_target_dataset_trains_reports_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert _train(run_dir, *CUSTOM) == 0
    identity = json.loads((run_dir / "identity.json").read_text())
    assert identity["settings"]["dataset.train._target_"] == "tests.data.custom_target.features"
    assert identity["settings"]["dataset.fingerprint"].startswith("sha256:")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["data"]["input_shape"] == [1, 1, 12] and state["data"]["input_kind"] == "float"

    model = _report_and_export(run_dir, tmp_path, capsys)
    assert model.preprocessing.input_kind == "float" and model.preprocessing.input_shape == (1, 1, 12)
    features = torch.randn(5, 12, dtype=torch.float64)  # (N, F) as the Dataset gave them
    assert model(model.preprocessing(features)).shape == (5, 3)


def test_export_never_calls_a_custom_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The stored configuration names the target; export uses the checkpoint's record only. A target that would
    fail if called (the module is renamed in the stored config) does not matter to it."""
    run_dir = tmp_path / "run"
    assert _train(run_dir, *CUSTOM) == 0
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("tests.data.custom_target.features", "no_such_module.boom"))
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["config"] = config.read_text()
    torch.save(state, run_dir / "checkpoints" / "last.pt")
    out = tmp_path / "model.pt"
    assert export_main([str(run_dir), "--out", str(out), "--batch-size", "2"]) == 0
    assert load_sparse(out).preprocessing.input_kind == "float"


def test_other_data_in_the_same_run_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_npz(tmp_path / "data.npz", seed=0)
    run_dir = tmp_path / "run"
    assert _train(run_dir, "dataset=Arrays", f"dataset.path={data}") == 0
    first = json.loads((run_dir / "identity.json").read_text())["settings"]["dataset.fingerprint"]
    summary = (run_dir / "summary.json").read_bytes()
    capsys.readouterr()

    write_npz(data, seed=1)  # the same path now holds other data
    assert _train(run_dir, "dataset=Arrays", f"dataset.path={data}") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ")
    assert f"dataset.fingerprint {first!r} (this run: 'sha256:" in error
    assert (run_dir / "summary.json").read_bytes() == summary  # the earlier result is kept

    moved = tmp_path / "elsewhere.npz"
    write_npz(moved, seed=0)  # the first data under another name: the same run, finished, so it only evaluates
    assert _train(run_dir, "dataset=Arrays", f"dataset.path={moved}") == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+optimizer._target_=os.system"], "optimizer._target_ is refused: the only keys that may name code are"),
        (["+dataset.train._target_=os.getcwd"], "unknown setting dataset.train="),
        (["dataset=Custom", "dataset.test._target_=tests.data.custom_target.features"], "dataset.train._target_ must"),
        (
            [*CUSTOM, "+dataset.train.transform._target_=os.system"],
            "dataset.train.transform._target_ is refused: the only keys that may name code are",
        ),
        (
            [*CUSTOM, "++dataset.train={_target_: tests.data.custom_target.features, t: {_target_: os.system}}"],
            "dataset.train.t._target_ is refused: only dataset.train._target_ may name code",
        ),
        (["dataset=Custom", "dataset.train._target_=tests.data.custom_target.not_a_dataset", *CUSTOM[2:]], "not a"),
        (["dataset=Arrays"], "dataset.path must be the path of an .npz file"),
    ],
)
def test_bad_own_data_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], message: str
) -> None:
    assert _train(tmp_path / "run", *overrides) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert not (tmp_path / "run" / "summary.json").exists()
