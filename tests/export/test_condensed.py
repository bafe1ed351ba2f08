"""Condensed export of constant fan-in Linear layers (SRigL): `CondensedLinear` computes what the masked layer
computes (ablated neurons output their bias), `to_sparse` keeps whichever of dense, CSR and condensed the timer
measured fastest, files round-trip through the checked loader, and a forged index table is refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.export import (
    CondensedLinear,
    SparseLinear,
    convert,
    load_sparse,
    save_sparse,
    to_sparse_with_report,
)
from sparselearning.export.layers import constant_fan_in
from sparselearning.export.serialize import sparse_payload
from sparselearning.models import MLP

SPEC = {"name": "MLP", "kwargs": {"widths": [32, 24, 16, 10]}}


def _constant_fan_in_model(ablated: tuple[int, ...] = (3, 7)) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The spec's MLP, each Linear keeping 6 random inputs per neuron; hidden neurons in `ablated` keep none."""
    torch.manual_seed(0)
    model = MLP(SPEC["kwargs"]["widths"]).eval()
    generator = torch.Generator().manual_seed(1)
    masks: dict[str, torch.Tensor] = {}
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for position, (name, layer) in enumerate(linears):
        mask = torch.zeros_like(layer.weight, dtype=torch.bool)
        for row in range(layer.out_features):
            mask[row, torch.randperm(layer.in_features, generator=generator)[:6]] = True
        if position < len(linears) - 1:
            mask[list(ablated)] = False
        masks[f"{name}.weight"] = mask
        with torch.no_grad():
            layer.weight.mul_(mask)
    return model, masks


def _race_won_by(winner: str) -> Any:
    """A stand-in for `convert._race` that reports `winner` fastest, whatever the machine measures."""
    return lambda contenders, device, rounds=5: {name: (1e-3 if name == winner else 2e-3) for name in contenders}


def test_condensed_layer_matches_the_masked_layer_with_ablated_neurons() -> None:
    model, _ = _constant_fan_in_model()
    layer = model.get_submodule(next(n for n, m in model.named_modules() if isinstance(m, nn.Linear)))
    assert isinstance(layer, nn.Linear)
    condensed = CondensedLinear.from_dense(layer)
    assert (condensed.out_features, condensed.fan_in, condensed.indices.shape) == (24, 6, (24, 6))
    for shape in [(1, 32), (32,), (5, 32), (2, 3, 32)]:
        inputs = torch.randn(shape)
        with torch.no_grad():
            assert condensed(inputs).shape == layer(inputs).shape
            assert float((condensed(inputs) - layer(inputs)).abs().max()) < 1e-5
    with torch.no_grad():
        assert torch.equal(condensed(torch.randn(4, 32))[:, [3, 7]], layer.bias[[3, 7]].expand(4, 2))


@pytest.mark.parametrize("batch", [1, 8])
def test_to_sparse_keeps_condensed_where_measured_fastest(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by("condensed"))
    model, masks = _constant_fan_in_model()
    inputs = torch.randn(batch, 32)
    sparse, decisions = to_sparse_with_report(model, masks, example_input=inputs)
    assert [d.kind for d in decisions] == ["condensed_linear"] * 3
    assert sum(isinstance(m, CondensedLinear) for m in sparse.modules()) == 3
    first = decisions[0]
    assert (first.dense_ms, first.sparse_ms, first.timings) == (
        2.0,
        1.0,
        (("dense", 2.0), ("csr", 2.0), ("condensed", 1.0)),
    )
    assert first.reason == "measured fastest as condensed (dense 2.0000 ms, csr 2.0000 ms, condensed 1.0000 ms)"
    with torch.no_grad():
        assert float((model(inputs) - sparse(inputs)).abs().max()) < 1e-5


@pytest.mark.parametrize(
    ("winner", "kind", "layer_type"), [("dense", "dense", nn.Linear), ("csr", "csr_linear", SparseLinear)]
)
def test_the_other_layouts_win_when_measured_faster(
    winner: str, kind: str, layer_type: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by(winner))
    model, masks = _constant_fan_in_model()
    inputs = torch.randn(1, 32)
    sparse, decisions = to_sparse_with_report(model, masks, example_input=inputs)
    assert [d.kind for d in decisions] == [kind] * 3
    assert decisions[0].reason.startswith(f"measured fastest as {winner} (")
    assert [type(m) for m in sparse.modules() if isinstance(m, (nn.Linear, SparseLinear, CondensedLinear))] == [
        layer_type
    ] * 3
    with torch.no_grad():
        assert float((model(inputs) - sparse(inputs)).abs().max()) < 1e-5


def test_without_example_input_constant_fan_in_stays_csr() -> None:
    model, masks = _constant_fan_in_model()
    _, decisions = to_sparse_with_report(model, masks)
    assert [(d.kind, d.reason, d.timings) for d in decisions] == [("csr_linear", "masked Linear", ())] * 3


def test_srigl_masks_export_to_condensed_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by("condensed"))
    torch.manual_seed(0)
    model = MLP([64, 48, 32, 10])
    masking = methods.srigl(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.2)
    assert all(constant_fan_in(mask) is not None for mask in masking.mask_dict.values())
    model.eval()
    inputs = torch.randn(3, 64)
    sparse, decisions = to_sparse_with_report(model, masking, example_input=inputs)
    assert {d.kind for d in decisions} == {"condensed_linear"}
    masked = {
        name: p * masking.mask_dict[name] if name in masking.mask_dict else p for name, p in model.named_parameters()
    }
    with torch.no_grad():
        reference = torch.func.functional_call(model, masked, (inputs,))
        assert float((reference - sparse(inputs)).abs().max()) < 1e-5
        assert float((reference[:1] - sparse(inputs[:1])).abs().max()) < 1e-5


def test_condensed_layers_round_trip_through_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by("condensed"))
    model, masks = _constant_fan_in_model()
    inputs = torch.randn(4, 32)
    sparse, _ = to_sparse_with_report(model, masks, example_input=inputs)
    save_sparse(sparse, tmp_path / "model.pt", spec=SPEC)
    loaded = load_sparse(tmp_path / "model.pt")
    assert sum(isinstance(m, CondensedLinear) for m in loaded.modules()) == 3
    with torch.no_grad():
        assert torch.equal(loaded(inputs), sparse(inputs))


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda e: e["indices"].fill_(32), r"condensed index table holds 32\.\.32, allowed 0\.\.31 for 32 inputs"),
        (lambda e: e["indices"].fill_(-1), r"condensed index table holds -1\.\.-1, allowed 0\.\.31"),
        (lambda e: e.update(indices=e["indices"][:, :5]), r"index table has shape \(24, 5\), its weight has \(24, 6\)"),
        (
            lambda e: e.update(indices=e["indices"].float()),
            r"must be a dense int32 or int64 tensor, got torch\.float32",
        ),
        (lambda e: e.update(weight=e["weight"][:20]), r"'weight' must be a dense \(24, k\) tensor"),
    ],
)
def test_a_forged_index_table_is_refused_in_one_line(
    forge: Any, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by("condensed"))
    model, masks = _constant_fan_in_model()
    sparse, _ = to_sparse_with_report(model, masks, example_input=torch.randn(2, 32))
    payload = sparse_payload(sparse, SPEC)
    entry = next(e for e in payload["layers"].values() if e["kind"] == "condensed_linear")
    forge(entry)
    torch.save(payload, tmp_path / "forged.pt")
    with pytest.raises(SparseLearningError, match=message) as caught:
        load_sparse(tmp_path / "forged.pt")
    assert "\n" not in str(caught.value) and "of the sparse model file" in str(caught.value)
