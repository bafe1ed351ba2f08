"""Sparse recurrent layers at export: `SparseRecurrent` matches the dense LSTM/GRU/RNN, `to_sparse` keeps whichever
layout the timer measured faster, files round-trip through the checked loader, and refusals are one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sparselearning.errors import SparseLearningError
from sparselearning.export import SparseRecurrent, convert, load_sparse, save_sparse, to_sparse_with_report


def _masked(layer: nn.Module, density: float = 0.3, seed: int = 0) -> nn.Module:
    """`layer` in eval mode with about `density` of each weight matrix kept, the rest zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if name.rpartition(".")[2].startswith("weight"):
                parameter.mul_(torch.rand(parameter.shape, generator=generator) < density)
    return layer.eval()


def _flat(result: tuple[torch.Tensor, Any]) -> list[torch.Tensor]:
    output, state = result
    return [output, *(state if isinstance(state, tuple) else (state,))]


def _largest_difference(first: tuple[torch.Tensor, Any], second: tuple[torch.Tensor, Any]) -> float:
    pairs = list(zip(_flat(first), _flat(second), strict=True))
    assert all(a.shape == b.shape for a, b in pairs)
    return max(float((a - b).abs().max()) for a, b in pairs)


def _initial_state(layer: nn.RNNBase, batch: int | None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), *(() if batch is None else (batch,)))
    h0 = torch.randn(*shape, layer.hidden_size, generator=generator)
    return (h0, torch.randn(h0.shape, generator=generator)) if isinstance(layer, nn.LSTM) else h0


LAYERS = {
    "lstm 2 layers bidirectional batch_first": lambda: nn.LSTM(
        6, 8, num_layers=2, bidirectional=True, batch_first=True
    ),
    "gru 2 layers bidirectional batch_first": lambda: nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "lstm sequence first without biases": lambda: nn.LSTM(6, 8, bias=False),
    "rnn relu 3 layers bidirectional": lambda: nn.RNN(6, 8, num_layers=3, nonlinearity="relu", bidirectional=True),
    "rnn tanh batch_first": lambda: nn.RNN(6, 8, batch_first=True),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("batch", [3, 1, None])
@pytest.mark.parametrize("with_state", [False, True])
def test_sparse_recurrent_returns_what_the_dense_layer_returns(name: str, batch: int | None, with_state: bool) -> None:
    torch.manual_seed(0)
    dense = _masked(LAYERS[name]())
    assert isinstance(dense, nn.RNNBase)
    sparse = SparseRecurrent.from_dense(dense)
    length = 5
    shape = (length, 6) if batch is None else ((batch, length, 6) if dense.batch_first else (length, batch, 6))
    inputs = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    arguments = (inputs, _initial_state(dense, batch)) if with_state else (inputs,)
    with torch.no_grad():
        assert _largest_difference(dense(*arguments), sparse(*arguments)) < 1e-5


class _Tagger(nn.Module):
    """A two-layer bidirectional LSTM over a sequence, then a Linear per step."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, width, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * width, 4)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(inputs)[0])


INPUTS = torch.randn(2, 7, 8, generator=torch.Generator().manual_seed(5))


def _tagger() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = _masked(_Tagger(), 0.2)
    masks = {name: parameter != 0 for name, parameter in model.named_parameters() if name.startswith("lstm.weight")}
    return model, masks


def _race_won_by(winner: str) -> Any:
    """A stand-in for `convert._race` that reports `winner` twice as fast, whatever the machine measures."""
    loser = "dense" if winner == "sparse" else "sparse"
    return lambda contenders, device, rounds=5: {winner: 1e-3, loser: 2e-3}


@pytest.mark.parametrize("winner", ["sparse", "dense"])
def test_the_measured_faster_layout_is_kept(winner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by(winner))
    model, masks = _tagger()
    sparse, decisions = to_sparse_with_report(model, masks, example_input=INPUTS)
    (decision,) = decisions
    assert (decision.name, decision.dense_ms, decision.sparse_ms) == ("lstm", 2.0 if winner == "sparse" else 1.0,
                                                                     1.0 if winner == "sparse" else 2.0)  # fmt: skip
    assert decision.parameters == tuple(name for name in masks)
    if winner == "sparse":
        assert (decision.kind, decision.reason, decision.sparse) == ("csr_recurrent", "measured faster", True)
        assert isinstance(sparse.lstm, SparseRecurrent)
    else:
        assert (decision.kind, decision.reason) == ("dense", "measured slower as sparse")
        assert type(sparse.lstm) is nn.LSTM
    with torch.no_grad():
        assert float((model(INPUTS) - sparse(INPUTS)).abs().max()) < 1e-5


def test_without_example_input_recurrent_layers_stay_dense() -> None:
    model, masks = _tagger()
    sparse, (decision,) = to_sparse_with_report(model, masks)
    assert type(sparse.lstm) is nn.LSTM and decision.kind == "dense" and decision.dense_ms is None
    assert decision.reason == ("not measured (no example_input); recurrent layers go sparse only where measured faster")


def test_a_sparse_recurrent_layer_round_trips_through_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by("sparse"))
    model, masks = _tagger()
    sparse, _ = to_sparse_with_report(model, masks, example_input=INPUTS)
    path = tmp_path / "tagger.sparse.pt"
    save_sparse(sparse, path)
    payload = torch.load(path, weights_only=True)
    assert payload["layers"] == {"lstm": {"kind": "csr_recurrent"}}
    assert sorted(payload["tensors"]) == sorted([*masks, "head.weight"])  # every recurrent matrix compressed
    loaded = load_sparse(path, _Tagger())
    assert isinstance(loaded.lstm, SparseRecurrent) and loaded.lstm.batch_first and loaded.lstm.bidirectional
    with torch.no_grad():
        assert float((model(INPUTS) - loaded(INPUTS)).abs().max()) < 1e-5
        assert _largest_difference(model.lstm(INPUTS), loaded.lstm(INPUTS)) < 1e-5

    payload["layers"]["lstm"] = {"kind": "csr_recurrent", "values": torch.zeros(3)}
    torch.save(payload, path)
    with pytest.raises(SparseLearningError) as extra:
        load_sparse(path, _Tagger())
    assert str(extra.value) == (
        "layer 'lstm' of the sparse model file: a 'csr_recurrent' entry holds only its kind, found ['kind', 'values']"
    )
    payload["layers"]["lstm"] = {"kind": "csr_recurrent"}
    payload["layers"]["head"] = {"kind": "csr_recurrent"}
    torch.save(payload, path)
    with pytest.raises(SparseLearningError) as wrong_layer:
        load_sparse(path, _Tagger())
    assert str(wrong_layer.value) == (
        "layer 'head' of the sparse model file: a 'csr_recurrent' entry, but Linear is not an nn.LSTM, nn.GRU or nn.RNN"
    )


class _Packed(nn.Module):
    """An LSTM fed a packed sequence, and an LSTM with a projection."""

    def __init__(self) -> None:
        super().__init__()
        self.packed = nn.LSTM(8, 8, batch_first=True)
        self.projected = nn.LSTM(8, 8, proj_size=4, batch_first=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(inputs, [7, 5], batch_first=True)
        return self.projected(pad_packed_sequence(self.packed(packed)[0], batch_first=True)[0])[0]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_refusals_keep_the_layer_dense_and_say_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_race", _race_won_by("sparse"))
    model = _masked(_Packed())
    masks = {name: parameter != 0 for name, parameter in model.named_parameters() if "weight_ih" in name}
    sparse, decisions = to_sparse_with_report(model, masks, example_input=INPUTS)
    assert [(d.name, d.kind, d.reason) for d in decisions] == [
        ("packed", "dense", "its input is a packed sequence, which the sparse recurrence does not take"),
        ("projected", "dense", "proj_size > 0 has no sparse form"),
    ]
    assert type(sparse.packed) is nn.LSTM and type(sparse.projected) is nn.LSTM
    with pytest.raises(SparseLearningError) as refused:
        SparseRecurrent.from_dense(model.projected)
    assert str(refused.value) == "SparseRecurrent cannot replace this layer: proj_size > 0 has no sparse form"
    recurrent = SparseRecurrent.from_dense(model.packed)
    with pytest.raises(SparseLearningError, match=r"^an LSTM's initial state is \(h_0, c_0\); a GRU's or RNN's"):
        recurrent(INPUTS, torch.zeros(1, 2, 8))
