"""Export of attention, recurrent and tied weights: round trips, the per-layer choice, file sizes, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.export import (
    SparseLinear,
    SparseMultiheadAttention,
    SparseRecurrent,
    convert,
    export_checkpoint,
    load_sparse,
    save_sparse,
    to_sparse_with_report,
)
from tests.export.helpers import RecurrentModel, TiedSequenceModel, masking_for

TOKENS = torch.randint(0, 500, (6, 10), generator=torch.Generator().manual_seed(1))


def _masked_tied_model() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = TiedSequenceModel(vocab=500, width=64)
    masking = masking_for(model, 0.1)
    return model.eval(), {name: mask.clone() for name, mask in masking.mask_dict.items()}


def _dense_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _outputs(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs)


@pytest.fixture
def sparse_attention_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every race reports the sparse contender faster, so the sparse attention path is taken on any machine."""
    monkeypatch.setattr(convert, "_race", lambda contenders, device, rounds=5: {"dense": 2e-3, "sparse": 1e-3})


@pytest.mark.parametrize("measured", ["measured", "sparse wins", "no example input"])
def test_transformer_lstm_tied_model_round_trip(measured: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if measured == "sparse wins":
        request.getfixturevalue("sparse_attention_wins")
    model, masks = _masked_tied_model()
    example = None if measured == "no example input" else TOKENS
    sparse, decisions = to_sparse_with_report(model, masks, example_input=example)
    path = tmp_path / "tied.sparse.pt"
    size = save_sparse(sparse, path)
    loaded = load_sparse(path, TiedSequenceModel(vocab=500, width=64))

    assert (_outputs(model, TOKENS) - _outputs(loaded, TOKENS)).abs().max() < 1e-5
    assert loaded.head.weight is loaded.embed.weight  # the tie survives export and loading
    payload = torch.load(path, weights_only=True)
    assert payload["ties"] == {"embed.weight": ["head.weight"]}
    stored = [*payload["state"], *payload["tensors"]]
    assert "embed.weight" in payload["tensors"] and "head.weight" not in stored  # stored once, compressed
    assert size < 0.3 * _dense_bytes(model)  # measured 0.25 at density 0.1 (biases and norms stay dense)

    by_name = {d.name: d for d in decisions}
    assert list(by_name) == ["head.weight", "encoder", "lstm"]
    assert (
        by_name["head.weight"].kind == "dense"
        and "tied weight (embed.weight, head.weight)" in by_name["head.weight"].reason
    )
    lstm = by_name["lstm"]
    assert lstm.parameters == ("lstm.weight_ih_l0", "lstm.weight_hh_l0")
    encoder = by_name["encoder"]
    assert len(encoder.parameters) == 8  # per layer: in_proj, out_proj, linear1, linear2
    attention = loaded.encoder.layers[0].self_attn
    if measured == "no example input":
        assert (
            encoder.kind == "dense" and encoder.dense_ms is None and "not measured (no example_input)" in encoder.reason
        )
        assert type(attention) is nn.MultiheadAttention
        assert lstm.kind == "dense" and lstm.reason.startswith("not measured (no example_input)")
        assert type(loaded.lstm) is nn.LSTM
    else:
        assert encoder.dense_ms is not None and encoder.sparse_ms is not None
        assert (encoder.kind == "csr_attention") == (encoder.sparse_ms < encoder.dense_ms)
        assert isinstance(attention, SparseMultiheadAttention) == (encoder.kind == "csr_attention")
        assert lstm.dense_ms is not None and lstm.sparse_ms is not None
        assert (lstm.kind == "csr_recurrent") == (lstm.sparse_ms < lstm.dense_ms)
        assert isinstance(loaded.lstm, SparseRecurrent) == (lstm.kind == "csr_recurrent")
    if measured == "sparse wins":
        assert isinstance(loaded.encoder.layers[1].linear1, SparseLinear)
        assert payload["layers"]["encoder.layers.0.self_attn"] == {"kind": "csr_attention"}
        assert payload["layers"]["lstm"] == {"kind": "csr_recurrent"} and lstm.kind == "csr_recurrent"


def test_recurrent_model_exports_from_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RecurrentModel(features=12, width=48)
    masking = masking_for(model, 0.1)
    config = (
        "model:\n  _target_: tests.export.helpers.RecurrentModel\n"
        "dataset:\n  name: Synthetic\n  num_classes: 5\n  shape: [1, 9, 12]\nmasking:\n  name: static\n"
    )
    checkpoint = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "masking": masking.state_dict(), "config": config}, checkpoint)
    inputs = torch.randn(4, 9, 12, generator=torch.Generator().manual_seed(2))
    out = tmp_path / "rnn.sparse.pt"

    result = export_checkpoint(checkpoint, out, model=RecurrentModel(features=12, width=48), example_input=inputs)

    assert (result["layers"][0]["name"], result["layers"][0]["kind"]) == ("fc", "csr_linear")
    for layer in result["layers"][1:]:  # each recurrent layer timed, the faster kept
        assert layer["name"] in ("gru", "rnn")
        assert (layer["kind"] == "csr_recurrent") == (layer["sparse_ms"] < layer["dense_ms"])
    assert result["max_abs_diff"] < 1e-5 and result["ratio"] < 0.3  # measured 0.27
    loaded = load_sparse(out, RecurrentModel(features=12, width=48))
    assert (_outputs(model.eval(), inputs) - _outputs(loaded, inputs)).abs().max() < 1e-5
    payload = torch.load(out, weights_only=True)
    assert float(payload["tensors"]["gru.weight_hh_l1_reverse"]["values"].count_nonzero()) == float(
        masking.mask_dict["gru.weight_hh_l1_reverse"].sum()
    )


class _ExpectsALinearHead(nn.Module):
    """A model whose code checks its layer's class, so a sparse replacement of that layer breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 5)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.fc, nn.Linear):
            raise TypeError(f"this model needs an nn.Linear head, got {type(self.fc).__name__}\nmore detail")
        return self.fc(inputs)


def test_a_layer_that_cannot_be_exported_is_refused_in_one_line(tmp_path: Path) -> None:
    model = _ExpectsALinearHead()
    masking = masking_for(model, 0.1)
    config = "model:\n  _target_: x.Y\ndataset:\n  name: Synthetic\n  num_classes: 5\n  shape: [1, 1, 12]\n"
    checkpoint = tmp_path / "last.pt"
    torch.save(
        {"model": model.state_dict(), "masking": masking.state_dict(), "config": config + "masking:\n  name: s\n"},
        checkpoint,
    )
    out = tmp_path / "refused.pt"
    with pytest.raises(SparseLearningError) as refused:
        export_checkpoint(checkpoint, out, model=_ExpectsALinearHead())
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "cannot export: the model with sparse layers ['fc'] fails on example_input (this model needs an nn.Linear "
        "head, got SparseLinear); some code must use one of these layers as the dense layer it was"
    )
    assert list(tmp_path.iterdir()) == [checkpoint]  # no file, not even a temporary one


class _AttentionWithOwnHead(nn.Module):
    """A bare MultiheadAttention (its out_proj is read by the attention, never called) and a Linear whose weight
    the model also reads directly."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 16)
        self.scale = nn.Linear(16, 4)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        attended = self.attention(inputs, inputs, inputs, need_weights=False)[0]
        return self.scale(self.fc(attended)) + F.linear(attended, self.fc.weight)[..., :4]


def test_weights_read_outside_their_layer_keep_the_layer_dense() -> None:
    torch.manual_seed(0)
    model = _AttentionWithOwnHead()
    masks = {name: mask.clone() for name, mask in masking_for(model, 0.2).mask_dict.items()}
    inputs = torch.randn(3, 7, 16)
    sparse, decisions = to_sparse_with_report(model.eval(), masks, example_input=inputs)
    by_name = {d.name: d for d in decisions}
    assert by_name["fc"].kind == "dense"
    assert by_name["fc"].reason == "its weight is also used outside its forward (by _AttentionWithOwnHead)"
    assert by_name["scale"].kind == "csr_linear"
    assert by_name["attention"].parameters == ("attention.in_proj_weight", "attention.out_proj.weight")
    assert type(sparse.attention.out_proj) is not SparseLinear  # replacing it alone would change nothing
    assert (_outputs(model, inputs) - _outputs(sparse, inputs)).abs().max() < 1e-5


def test_tied_masks_given_under_both_names_must_agree() -> None:
    model, masks = _masked_tied_model()
    masks["embed.weight"] = masks["head.weight"].clone()
    assert next(d.name for d in to_sparse_with_report(model, masks)[1]) == "head.weight"
    masks["embed.weight"][0, 0] = ~masks["embed.weight"][0, 0]
    with pytest.raises(SparseLearningError, match="masks 'head.weight' and 'embed.weight' differ"):
        to_sparse_with_report(model, masks)


def test_a_file_may_not_tie_what_the_model_does_not(tmp_path: Path) -> None:
    model = RecurrentModel()
    path = tmp_path / "model.pt"
    save_sparse(to_sparse_with_report(model, masking_for(model, 0.1).mask_dict)[0], path)
    payload = torch.load(path, weights_only=True)
    payload["ties"] = {"fc.weight": ["rnn.weight_hh_l0"]}
    torch.save(payload, path)
    with pytest.raises(SparseLearningError, match=r"ties 'fc.weight' to \['rnn.weight_hh_l0'\], which the model"):
        load_sparse(path, RecurrentModel())
