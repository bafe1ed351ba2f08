"""The exported file records the input preprocessing; `load_sparse` exposes it as `model.preprocessing`, which turns
raw inputs into exactly the training loader's batches; files and checkpoints without it still load and export."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from sparselearning.data.loader import InMemoryLoader
from sparselearning.data.registry import KNOWN, load_dataset
from sparselearning.errors import SparseLearningError
from sparselearning.export import Preprocessing, load_sparse
from sparselearning.export.command import export_checkpoint, main

RECORD = {"input_kind": "uint8", "input_shape": [1, 28, 28], "mean": [0.25], "std": [0.5]}


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "model.pt"
    export_checkpoint(run_dir, out, batch_size=4)
    return out


def test_the_exported_model_fed_preprocessed_raw_pixels_computes_what_it_computed_in_training(exported: Path) -> None:
    model = load_sparse(exported)
    tensors, info = load_dataset("Synthetic", num_classes=10, shape=(1, 28, 28), train=64, val=32, test=32, seed=0)
    assert model.preprocessing == Preprocessing("uint8", info.input_shape, info.mean, info.std)
    raw = tensors["test_images"]
    loader = InMemoryLoader(raw, tensors["test_labels"], len(raw), info.mean, info.std, shuffle=False)
    (batch, _), *_ = list(loader)
    prepared = model.preprocessing(raw)
    assert torch.equal(prepared, batch)  # the same float32 arithmetic, bit for bit
    with torch.no_grad():
        assert float((model(prepared) - model(batch)).abs().max()) <= 1e-6
        from_unit_floats = model(model.preprocessing(raw.double() / 255.0))  # [0, 1] floats, as ToTensor gives
        assert float((from_unit_floats - model(batch)).abs().max()) <= 1e-4
        one_channel = model.preprocessing(raw[:, 0])  # (N, H, W) for a one-channel model
    assert torch.equal(one_channel, batch)


def test_float_inputs_are_prepared_exactly_as_the_loader_normalises_them() -> None:
    inputs = torch.randn(7, 1, 1, 5, generator=torch.Generator().manual_seed(0)) * 3 + 2
    preprocessing = Preprocessing("float", (1, 1, 5), (2.1,), (2.9,))
    loader = InMemoryLoader(inputs, torch.zeros(7, dtype=torch.int64), 7, (2.1,), (2.9,), shuffle=False)
    (batch, _), *_ = list(loader)
    assert torch.equal(preprocessing(inputs), batch)
    assert torch.equal(preprocessing(inputs.reshape(7, 5).double().numpy()), batch)  # (N, F) numpy features


def test_raw_inputs_of_the_wrong_kind_or_shape_are_refused() -> None:
    pixels = Preprocessing.from_record(RECORD, "test")
    with pytest.raises(SparseLearningError, match=r"must lie in \[0, 1\], found \[255, 255\]; pass uint8 pixels"):
        pixels(torch.full((2, 1, 28, 28), 255.0))
    with pytest.raises(SparseLearningError, match=r"must be uint8 \(0..255\) or floats in \[0, 1\], got torch.int32"):
        pixels(torch.zeros(2, 1, 28, 28, dtype=torch.int32))
    channels_last = r"shape \[2, 28, 28, 1\] do not fit .* \(N, 1, 28, 28\) or \(N, 28, 28\)"
    with pytest.raises(SparseLearningError, match=channels_last):
        pixels(torch.zeros(2, 28, 28, 1, dtype=torch.uint8))  # channels last
    assert pixels.describe().startswith("uint8 pixels / 255 (or floats in [0, 1]) of shape (1, 28, 28)")


def test_a_known_dataset_checkpoint_without_a_data_record_gets_its_published_normalisation(
    crafted_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def as_old_mnist(state: dict[str, Any]) -> None:
        del state["data"]
        state["config"] = state["config"].replace("name: Synthetic", "name: MNIST")

    out = tmp_path / "old.pt"
    assert main([str(crafted_run(as_old_mnist)), "--out", str(out), "--batch-size", "2"]) == 0
    mnist = KNOWN["MNIST"]
    assert load_sparse(out).preprocessing == Preprocessing("uint8", mnist.input_shape, mnist.mean, mnist.std)
    assert "input preprocessing recorded: uint8 pixels / 255" in capsys.readouterr().out


def test_an_old_synthetic_checkpoint_exports_without_preprocessing(
    crafted_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "old.pt"
    assert main([str(crafted_run(lambda state: state.pop("data"))), "--out", str(out), "--batch-size", "2"]) == 0
    assert load_sparse(out).preprocessing is None
    assert "no input preprocessing recorded (model.preprocessing is None)" in capsys.readouterr().out


def test_an_old_file_without_the_record_loads_with_none(exported: Path, tmp_path: Path) -> None:
    payload = torch.load(exported, weights_only=True)
    del payload["preprocessing"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_sparse(tmp_path / "old.pt").preprocessing is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"std": [0.0]}, r"'preprocessing.std' of .* must be positive"),
        ({"std": [math.nan]}, r"'preprocessing.std' of .* must be 1 finite numbers \(one per channel\)"),
        ({"mean": [0.1, 0.2]}, r"'preprocessing.mean' of .* must be 1 finite numbers"),
        ({"mean": ["0.1"]}, r"'preprocessing.mean' of .* must be 1 finite numbers"),
        ({"input_kind": "os.system"}, r"'preprocessing.input_kind' of .* must be uint8 or float"),
        ({"input_shape": [1, 28]}, r"'preprocessing.input_shape' of .* must be 3 whole numbers"),
        ({"input_shape": [1, 1 << 13, 1 << 13]}, r"'preprocessing.input_shape' of .* at most 16777216 values"),
        ({"extra": 1}, r"'preprocessing' of .* must hold exactly input_kind, input_shape, mean, std"),
    ],
)
def test_a_bad_record_in_a_file_is_refused(exported: Path, tmp_path: Path, change: dict, message: str) -> None:
    payload = torch.load(exported, weights_only=True)
    payload["preprocessing"] = {**payload["preprocessing"], **change}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(SparseLearningError, match=message):
        load_sparse(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "MNIST"}, r"'data.name' of the checkpoint .* is 'MNIST', but .* trains on 'Synthetic'"),
        ({"num_classes": 0}, r"'data.num_classes' of the checkpoint .* must be a whole number in \[1, 1048576\]"),
        ({"std": [-1.0]}, r"'preprocessing.std' of the checkpoint .* must be positive"),
        ({"fingerprint": 3}, r"'data.fingerprint' of the checkpoint .* must be text or null"),
        ({"input_shape": [1, 8, 8]}, r"records 10 classes of shape \[1, 8, 8\], but .* has 10 of shape \[1, 28, 28\]"),
    ],
)
def test_a_bad_data_record_in_a_checkpoint_is_refused(
    crafted_run: Any, tmp_path: Path, change: dict, message: str
) -> None:
    run = crafted_run(lambda state: state["data"].update(change))
    with pytest.raises(SparseLearningError, match=message):
        export_checkpoint(run, tmp_path / "out.pt", batch_size=2)
    assert not (tmp_path / "out.pt").exists()
