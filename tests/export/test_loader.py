"""`load_sparse` on damaged and hostile files: one `SparseLearningError` naming the field, nothing big allocated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.export import load_sparse, save_sparse, to_sparse
from sparselearning.export.layers import SparseLinear
from sparselearning.models import LeNet5, LeNet300100
from tests.export.helpers import masked_reference, max_difference, random_masks

Payload = dict[str, Any]


def _lenet300_payload(tmp_path: Path) -> Payload:
    """LeNet-300-100 with only its first layer masked (CSR); the other two stay dense, in the file's state."""
    torch.manual_seed(0)
    model = LeNet300100()
    masks = {"layers.0.weight": random_masks(model, 0.1)["layers.0.weight"]}
    path = tmp_path / "base.pt"
    save_sparse(to_sparse(model, masks), path, spec={"name": "lenet300-100", "kwargs": {}})
    payload = torch.load(path, weights_only=True)
    assert sorted(payload["layers"]) == ["layers.0"] and "layers.2.weight" in payload["state"]
    return payload


def _lenet5_payload(tmp_path: Path) -> Payload:
    """LeNet-5 with every layer sparse: conv1 without active weights (bias only), conv2 a CSR convolution."""
    model = LeNet5()
    masks = random_masks(model, 0.1)
    masks["conv1.weight"] = torch.zeros_like(masks["conv1.weight"])
    path = tmp_path / "base.pt"
    save_sparse(to_sparse(model, masks, conv_density_threshold=1.0), path, spec={"name": "lenet5", "kwargs": {}})
    payload = torch.load(path, weights_only=True)
    assert payload["layers"]["conv1"]["kind"] == "bias_only" and payload["layers"]["conv2"]["kind"] == "csr_conv"
    return payload


def _load(payload: Payload, tmp_path: Path, model: nn.Module | None = None) -> nn.Module:
    path = tmp_path / "crafted.pt"
    torch.save(payload, path)
    return load_sparse(path, model)


def _huge_first_layer(payload: Payload) -> None:
    """Declare a 3e9-input first layer (3.6 TB dense) with consistent, tiny CSR data."""
    payload["model"]["kwargs"] = {"input_size": 3 * 10**9}
    payload["layers"]["layers.0"]["shape"] = [300, 3 * 10**9]
    payload["layers"]["layers.0"]["col_indices"] = payload["layers"]["layers.0"]["col_indices"].long()
    payload["layers"]["layers.0"]["crow_indices"] = payload["layers"]["layers.0"]["crow_indices"].long()


LENET300_CASES: dict[str, tuple[Callable[[Payload], None], str]] = {
    "huge spec": (lambda p: p["model"].update(kwargs={"input_size": 3 * 10**9}), "describes 900000031410 weights"),
    "spec that does not fit the layers": (lambda p: p["model"].update(kwargs={"input_size": 1000}), "'layers.0'"),
    "huge spec, consistent layer": (_huge_first_layer, "describes 900000031410 weights"),
    "kwargs not a dict": (lambda p: p["model"].update(kwargs=[1, 2]), "kwargs"),
    "kwargs a constructor rejects": (lambda p: p["model"].update(kwargs={"input_size": "wide"}), "lenet300-100"),
    "layers not a dict": (lambda p: p.update(layers=[1]), "'layers'"),
    "layer path not a string": (lambda p: p["layers"].update({5: p["layers"].pop("layers.0")}), "5"),
    "layer entry not a dict": (lambda p: p["layers"].update({"layers.0": "csr"}), "'layers.0'"),
    "unknown kind": (lambda p: p["layers"]["layers.0"].update(kind="magic"), "'magic'"),
    "shape not numbers": (lambda p: p["layers"]["layers.0"].update(shape=["300", 784]), "'shape'"),
    "crow_indices missing": (lambda p: p["layers"]["layers.0"].pop("crow_indices"), "'crow_indices'"),
    "crow_indices too short": (
        lambda p: p["layers"]["layers.0"].update(crow_indices=p["layers"]["layers.0"]["crow_indices"][:5]),
        "'crow_indices'",
    ),
    "float indices": (
        lambda p: p["layers"]["layers.0"].update(col_indices=p["layers"]["layers.0"]["col_indices"].float()),
        "int32",
    ),
    "integer values": (
        lambda p: p["layers"]["layers.0"].update(values=p["layers"]["layers.0"]["values"].long()),
        "'values'",
    ),
    "column out of range": (
        lambda p: p["layers"]["layers.0"]["col_indices"].__setitem__(0, 10**6),
        "invalid CSR data",
    ),
    "bias of the wrong shape": (lambda p: p["layers"]["layers.0"].update(bias=torch.zeros(7)), "'bias'"),
    "bias not a tensor": (lambda p: p["layers"]["layers.0"].update(bias="zeros"), "'bias'"),
    "bias missing": (lambda p: p["layers"]["layers.0"].update(bias=None), "'bias'"),
    "state overrides a checked buffer": (
        lambda p: p["state"].update({"layers.0.col_indices": torch.full((5,), 10**6, dtype=torch.int32)}),
        "'layers.0.col_indices'",
    ),
    "state entry of the wrong shape": (
        lambda p: p["state"].update({"layers.2.weight": torch.zeros(3)}),
        "'layers.2.weight'",
    ),
    "state entry not a tensor": (lambda p: p["state"].update({"layers.2.weight": [0.0]}), "'layers.2.weight'"),
    "state entry of the wrong dtype": (
        lambda p: p["state"].update({"layers.2.weight": torch.zeros(100, 300, dtype=torch.int64)}),
        "'layers.2.weight'",
    ),
    "state entry in a sparse layout": (
        lambda p: p["state"].update({"layers.2.bias": torch.zeros(100).to_sparse()}),
        "'layers.2.bias'",
    ),
    "state entry missing": (lambda p: p["state"].pop("layers.4.bias"), "layers.4.bias"),
    "state entry unexpected": (lambda p: p["state"].update({"layers.9.weight": torch.zeros(1)}), "layers.9.weight"),
    "state key not a string": (lambda p: p["state"].update({3: torch.zeros(1)}), "3"),
}


@pytest.mark.parametrize("case", sorted(LENET300_CASES))
def test_damaged_linear_files_are_one_error_naming_the_field(case: str, tmp_path: Path) -> None:
    change, field = LENET300_CASES[case]
    payload = _lenet300_payload(tmp_path)
    change(payload)
    with pytest.raises(SparseLearningError) as error:  # before any large allocation: 3.6 TB would fail
        _load(payload, tmp_path)
    message = str(error.value)
    assert field in message and "\n" not in message, message


LENET5_CASES: dict[str, tuple[Callable[[Payload], None], str]] = {
    "conv stride differs": (lambda p: p["layers"]["conv2"].update(stride=[2, 2]), "'stride'"),
    "conv shape differs": (lambda p: p["layers"]["conv2"].update(shape=[50, 20, 3, 3]), "'conv2'"),
    "conv geometry not numbers": (lambda p: p["layers"]["conv2"].update(padding="lots"), "'padding'"),
    "bias-only width not a number": (lambda p: p["layers"]["conv1"].update(out_features="abc"), "'out_features'"),
    "bias-only width differs": (lambda p: p["layers"]["conv1"].update(out_features=10**12), "'out_features'"),
    "bias-only kind unknown": (lambda p: p["layers"]["conv1"].update(layer="lstm"), "'layer'"),
    "bias-only on a linear's place": (lambda p: p["layers"]["conv1"].update(layer="linear"), "'conv1'"),
    "bias-only bias of the wrong shape": (lambda p: p["layers"]["conv1"].update(bias=torch.zeros(3)), "'bias'"),
    "no such module": (lambda p: p["layers"].update({"conv9": p["layers"]["conv1"]}), "'conv9'"),
}


@pytest.mark.parametrize("case", sorted(LENET5_CASES))
def test_damaged_conv_files_are_one_error_naming_the_field(case: str, tmp_path: Path) -> None:
    change, field = LENET5_CASES[case]
    payload = _lenet5_payload(tmp_path)
    change(payload)
    with pytest.raises(SparseLearningError) as error:
        _load(payload, tmp_path)
    assert field in str(error.value) and "\n" not in str(error.value), str(error.value)


@pytest.mark.parametrize("aliases", [0, 20_000])
def test_a_spec_that_builds_far_more_modules_than_the_file_holds_is_refused(aliases: int, tmp_path: Path) -> None:
    payload = _lenet5_payload(tmp_path)
    payload["model"] = {"name": "wrn-22-2", "kwargs": {"depth": 6 * 2000 + 4, "widen_factor": 1}}
    shared = torch.zeros(4)  # many names for one tensor must not make the file count as bigger
    payload["state"].update({f"alias{index}": shared for index in range(aliases)})
    with pytest.raises(SparseLearningError, match="modules"):
        _load(payload, tmp_path)


def test_a_dense_entry_may_not_expand_far_beyond_what_it_stores(tmp_path: Path) -> None:
    template = nn.Linear(8200, 2048, bias=False)  # 16.8M weights, above the 2**24 always allowed
    with torch.no_grad():
        template.weight.zero_()
        template.weight[0, 0] = 1.0  # one nonzero weight: stored compressed
    path = tmp_path / "big.pt"
    save_sparse(template, path)
    payload = torch.load(path, weights_only=True)
    assert list(payload["tensors"]) == ["weight"] and payload["layers"] == {}
    with pytest.raises(
        SparseLearningError, match="compressed tensor 'weight' .* would expand 2051 stored numbers to 16793600"
    ):
        load_sparse(path, template)
    # The layout of files written before "tensors": a 'dense' layer entry, checked the same way.
    payload["layers"] = {"": {"kind": "dense", **payload.pop("tensors")["weight"]}}
    with pytest.raises(SparseLearningError, match="'dense' entry of shape .* would expand"):
        _load(payload, tmp_path, template)


def test_files_from_a_float64_model_load_as_the_spec_builds_it(tmp_path: Path) -> None:
    model = LeNet300100().double()
    masks = random_masks(model, 0.1)
    masks.pop("layers.4.weight")  # one dense layer, saved in the state
    path = tmp_path / "model.pt"
    save_sparse(to_sparse(model, masks), path, spec={"name": "lenet300-100", "kwargs": {}})
    loaded = load_sparse(path)
    assert isinstance(loaded.layers[0], SparseLinear)
    assert {t.dtype for t in [*loaded.parameters(), *loaded.buffers()] if t.is_floating_point()} == {torch.float32}
    inputs = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    assert max_difference(masked_reference(model, masks).float(), loaded, inputs.float()) < 1e-4
