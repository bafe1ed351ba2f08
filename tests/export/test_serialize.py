"""`save_sparse` / `load_sparse`: weights-only files holding only active weights, rebuilt from their spec."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.export import FORMAT, export_report, load_sparse, save_sparse, to_sparse
from sparselearning.export.layers import SparseConv2d, SparseLinear
from tests.export.helpers import FAMILIES, masked_reference, max_difference, random_masks, with_random_statistics


def _state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_round_trip_from_the_spec(family: str, tmp_path: Path) -> None:
    factory, shape, spec = FAMILIES[family]
    model = with_random_statistics(factory())
    masks = random_masks(model, 0.1)
    sparse = to_sparse(model, masks, conv_density_threshold=0.5 if family == "lenet5" else 0.0)
    path = tmp_path / "model.pt"
    size = save_sparse(sparse, path, spec=spec)
    assert size == path.stat().st_size
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["model"] == spec
    loaded = load_sparse(path)
    inputs = torch.randn(2, *shape)
    assert max_difference(masked_reference(model, masks), loaded, inputs) < 1e-5
    assert [type(m) for m in loaded.modules()] == [type(m) for m in sparse.modules()]
    assert not loaded.training


def test_file_is_smaller_than_the_dense_state_dict(tmp_path: Path) -> None:
    model = FAMILIES["lenet5"][0]()
    masks = random_masks(model, 0.1)  # 90% sparse
    reference = masked_reference(model, masks)
    sparse = to_sparse(model, masks)  # convolutions stay dense here, and are stored compressed
    path = tmp_path / "model.pt"
    save_sparse(sparse, path, spec=FAMILIES["lenet5"][2])
    report = export_report(reference, load_sparse(path), inputs=torch.randn(2, 1, 28, 28), sparse_path=path)
    assert report.dense_bytes == _state_dict_bytes(reference)
    # int32 indices: 8 bytes per active weight instead of 4 per weight, so about 0.2 of the size plus overhead.
    assert report.sparse_bytes < 0.3 * report.dense_bytes and report.ratio < 0.3
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    in_memory = export_report(reference, sparse, spec=FAMILIES["lenet5"][2])
    assert abs(in_memory.sparse_bytes - report.sparse_bytes) < 2048


def test_without_spec_the_loader_needs_a_template(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    masks = random_masks(model, 0.25)
    path = tmp_path / "custom.pt"
    save_sparse(to_sparse(model, masks), path)
    with pytest.raises(SparseLearningError, match="no model spec"):
        load_sparse(path)
    template = nn.Sequential(nn.Flatten(), nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    loaded = load_sparse(path, template)
    assert isinstance(loaded[1], SparseLinear) and type(template[1]) is nn.Linear
    assert max_difference(masked_reference(model, masks), loaded, torch.randn(4, 20)) < 1e-5


def test_bias_only_and_dense_layers_round_trip(tmp_path: Path) -> None:
    model = FAMILIES["lenet5"][0]()
    masks = random_masks(model, 0.1)
    masks["conv1.weight"] = torch.zeros_like(masks["conv1.weight"])
    masks["fc4.weight"] = torch.ones_like(masks["fc4.weight"])
    sparse = to_sparse(model, masks, conv_density_threshold=1.0)
    path = tmp_path / "model.pt"
    save_sparse(sparse, path, spec=FAMILIES["lenet5"][2])
    loaded = load_sparse(path)
    assert isinstance(loaded.conv2, SparseConv2d) and type(loaded.fc4) is nn.Linear
    assert max_difference(masked_reference(model, masks), loaded, torch.randn(2, 1, 28, 28)) < 1e-5


def test_damaged_and_foreign_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(SparseLearningError, match="cannot read"):
        load_sparse(garbage)
    with pytest.raises(SparseLearningError, match="not found"):
        load_sparse(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(SparseLearningError, match="not a sparselearning sparse model file"):
        load_sparse(foreign)
    model = FAMILIES["mlp"][0]()
    path = tmp_path / "model.pt"
    save_sparse(to_sparse(model, random_masks(model, 0.2)), path, spec=FAMILIES["mlp"][2])
    payload = torch.load(path, weights_only=True)
    payload["layers"]["layers.0"]["col_indices"][0] = 10**6  # out of range: must not reach a CSR kernel
    torch.save(payload, path)
    with pytest.raises(SparseLearningError, match="invalid CSR data"):
        load_sparse(path)


def test_bad_spec_and_unwritable_path(tmp_path: Path) -> None:
    sparse = to_sparse(nn.Linear(4, 4), {"weight": torch.eye(4, dtype=torch.bool)})
    with pytest.raises(SparseLearningError, match="unknown model"):
        save_sparse(sparse, tmp_path / "x.pt", spec={"name": "os.system", "kwargs": {}})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SparseLearningError, match="cannot write"):
        save_sparse(sparse, blocker / "x.pt")


def test_an_asymmetric_sparse_conv_round_trips_without_a_spec(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1)), nn.Flatten())
    masks = random_masks(model, 0.1)
    sparse = to_sparse(model, masks, conv_density_threshold=1.0)
    assert isinstance(sparse[0], SparseConv2d)
    path = tmp_path / "conv.pt"
    save_sparse(sparse, path)
    template = nn.Sequential(nn.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1)), nn.Flatten())
    loaded = load_sparse(path, template)
    inputs = torch.randn(2, 3, 12, 10)
    assert max_difference(masked_reference(model, masks), loaded, inputs) < 1e-5


@pytest.mark.parametrize(
    ("geometry", "message"),
    [({"kernel_size": (3, 3, 3)}, "kernel_size"), ({"kernel_size": (3, 3), "stride": (1,)}, "stride")],
)
def test_a_conv_geometry_that_is_not_two_numbers_is_refused(geometry: dict, message: str) -> None:
    empty = torch.zeros(9, dtype=torch.int64)
    with pytest.raises(SparseLearningError, match=message):
        SparseConv2d(empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0), 1, 8, **geometry)
