"""What Masking masks: one record per weight tensor, the table, the dense-share warning, the model-wide density."""

from __future__ import annotations

import logging
import re
import warnings

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.coverage import (
    EXCLUDED,
    FROZEN,
    SPARSE_INIT,
    UNSUPPORTED,
    WeightCoverage,
    dense_share_warning,
    format_coverage,
)
from sparselearning.errors import SparseLearningWarning


class SequenceNet(nn.Module):
    """Embedding, a two-layer Transformer encoder, an LSTM and a Linear head: 5,696 weights in 12 tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.encoder(self.embed(tokens)))
        return self.head(hidden[:, -1])


def _rigl(model: nn.Module, **options) -> Masking:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return methods.rigl(model, optimizer, density=0.1, total_steps=40, update_frequency=3, **options)


def _quiet_rigl(model: nn.Module, **options) -> Masking:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseLearningWarning)
        return _rigl(model, **options)


def _train(model: nn.Module, masking: Masking, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        tokens = torch.randint(0, 50, (4, 6), generator=generator)
        masking.optimizer.zero_grad()
        model(tokens).square().mean().backward()
        masking.step()


def _nonzero_weights(model: nn.Module) -> tuple[int, int]:
    weights = [p for p in model.parameters() if p.dim() >= 2]
    return sum(int(torch.count_nonzero(p)) for p in weights), sum(p.numel() for p in weights)


EXPECTED = [
    ("embed.weight", (50, 16), False, UNSUPPORTED, "Embedding"),
    ("encoder.layers.0.self_attn.in_proj_weight", (48, 16), True, "", "MultiheadAttention"),
    ("encoder.layers.0.self_attn.out_proj.weight", (16, 16), True, "", "NonDynamicallyQuantizableLinear"),
    ("encoder.layers.0.linear1.weight", (32, 16), True, "", "Linear"),
    ("encoder.layers.0.linear2.weight", (16, 32), True, "", "Linear"),
    ("encoder.layers.1.self_attn.in_proj_weight", (48, 16), True, "", "MultiheadAttention"),
    ("encoder.layers.1.self_attn.out_proj.weight", (16, 16), True, "", "NonDynamicallyQuantizableLinear"),
    ("encoder.layers.1.linear1.weight", (32, 16), True, "", "Linear"),
    ("encoder.layers.1.linear2.weight", (16, 32), True, "", "Linear"),
    ("lstm.weight_ih_l0", (32, 16), True, "", "LSTM"),
    ("lstm.weight_hh_l0", (32, 8), True, "", "LSTM"),
    ("head.weight", (4, 8), True, "", "Linear"),
]


def test_every_weight_tensor_is_listed_masked_or_dense_with_its_reason() -> None:
    masking = _quiet_rigl(SequenceNet())
    got = [(r.name, r.shape, r.masked, r.reason, r.module_type) for r in masking.coverage]
    assert got == EXPECTED
    assert [r.numel for r in masking.coverage] == [800, 768, 256, 512, 512, 768, 256, 512, 512, 512, 256, 32]
    assert {r.name for r in masking.coverage if r.masked} == set(masking.mask_dict)


def test_the_table_shows_sizes_shares_and_reasons() -> None:
    masking = _quiet_rigl(SequenceNet())
    lines = masking.coverage_table().splitlines()
    assert masking.coverage_table() == format_coverage(masking.coverage)
    assert lines[0] == "weight coverage: 11 of 12 weight tensors masked, holding 4,896 of 5,696 weights (86.0%)"
    columns = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    assert columns[0] == ["tensor", "shape", "weights", "share", "status"]
    assert columns[1] == [
        "embed.weight",
        "50x16",
        "800",
        "14.0%",
        "dense: Embedding weights are masked only when included",
    ]
    assert columns[2] == ["encoder.layers.0.self_attn.in_proj_weight", "48x16", "768", "13.5%", "masked"]
    assert columns[3] == ["encoder.layers.0.self_attn.out_proj.weight", "16x16", "256", "4.5%", "masked"]
    assert columns[11] == ["lstm.weight_hh_l0", "32x8", "256", "4.5%", "masked"]
    assert columns[-1] == ["head.weight", "4x8", "32", "0.6%", "masked"]
    assert len(lines) == 2 + 12


def test_add_module_logs_the_table_and_warns_about_unintended_dense_weights(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="sparselearning.core"), pytest.warns(SparseLearningWarning) as caught:
        masking = _rigl(SequenceNet())
    assert len(caught) == 1
    assert str(caught[0].message) == (
        "14.0% of the model's weights (800 of 5,696) stay dense and outside the density: embed.weight (Embedding "
        "weights are masked only when included); pass include=[...] to mask them or exclude=[...] to keep them "
        "dense on purpose, see masking.coverage"
    )
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert masking.coverage_table() in caplog.text


def test_excluding_the_dense_tensors_on_purpose_silences_the_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparseLearningWarning)
        masking = _rigl(SequenceNet(), exclude=["embed", nn.LSTM, "in_proj"])
    reasons = {r.name: r.reason for r in masking.coverage if not r.masked}
    assert reasons == {
        "embed.weight": EXCLUDED,
        "encoder.layers.0.self_attn.in_proj_weight": EXCLUDED,
        "encoder.layers.1.self_attn.in_proj_weight": EXCLUDED,
        "lstm.weight_ih_l0": EXCLUDED,
        "lstm.weight_hh_l0": EXCLUDED,
    }
    assert len(masking.mask_dict) == 7


def test_a_dense_run_does_not_warn() -> None:
    model = SequenceNet()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparseLearningWarning)
        methods.dense(model, torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize(("rows", "warns"), [(1, False), (2, True)])
def test_the_warning_starts_at_one_percent_of_the_weights(rows: int, warns: bool) -> None:
    # 100x100 masked + a (rows x 51) embedding: 51 / 10051 = 0.51% stays quiet, 102 / 10102 = 1.01% warns
    model = nn.ModuleDict({"fc": nn.Linear(100, 100), "embed": nn.Embedding(rows, 51)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Masking(torch.optim.SGD(model.parameters(), lr=0.1), density=0.1).add_module(model)
    assert [w.category for w in caught] == ([SparseLearningWarning] if warns else [])


def test_frozen_and_scheme_kept_tensors_have_their_reasons() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    model[2].weight.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masking = Masking(optimizer, density=0.5, sparse_init="struct-random")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masking.add_module(model)
    assert [(r.name, r.masked, r.reason) for r in masking.coverage] == [
        ("0.weight", True, ""),
        ("2.weight", False, FROZEN),
        ("4.weight", False, SPARSE_INIT),
    ]
    assert [r.status for r in masking.coverage] == [
        "masked",
        "dense: frozen, requires_grad=False",
        "dense: kept dense by sparse_init",
    ]
    assert [str(w.message)[:5] for w in caught] == ["69.9%"], "only the frozen tensor counts as unintended"


def test_a_weight_shared_with_an_embedding_is_listed_once_under_its_masked_name() -> None:
    model = nn.ModuleDict({"embed": nn.Embedding(10, 6), "head": nn.Linear(6, 10, bias=False)})
    model["head"].weight = model["embed"].weight
    masking = _quiet_rigl(model)
    assert [(r.name, r.masked) for r in masking.coverage] == [("head.weight", True)]


def test_model_weight_density_counts_every_weight_tensor_exactly() -> None:
    model = SequenceNet()
    masking = _quiet_rigl(model)
    stats = masking.stats
    assert (stats.model_weight_nonzero, stats.model_weight_total) == _nonzero_weights(model)
    assert stats.model_weight_nonzero == 490 + 800  # round(0.1 * 4896) active masked weights + the dense embedding
    assert stats.model_weight_density == pytest.approx((490 + 800) / 5696)
    assert stats.total_density == pytest.approx(490 / 4896), "the masked-weights density is unchanged"
    _train(model, masking, 7)  # two mask updates: grown weights start at zero
    stats = masking.stats
    assert (stats.model_weight_nonzero, stats.model_weight_total) == _nonzero_weights(model)
    with torch.no_grad():
        model.embed.weight[:3] = 0.0  # a dense tensor changed by hand: counted at the next read
    assert masking.stats.model_weight_nonzero == _nonzero_weights(model)[0]


def test_records_and_warning_from_plain_data() -> None:
    rows = [
        WeightCoverage("a.weight", (10, 10), 100, "Linear", True),
        WeightCoverage("b.weight", (1, 1), 1, "Embedding", False, UNSUPPORTED),
    ]
    assert dense_share_warning(rows) is None  # 1 of 101 weights is 0.99%
    rows.append(WeightCoverage("c.weight", (1, 1), 1, "Linear", False, EXCLUDED))
    assert dense_share_warning(rows) is None, "excluded on purpose never counts"
    rows.append(WeightCoverage("d.weight", (1, 1), 1, "Linear", False, FROZEN))
    assert dense_share_warning(rows).startswith("1.9% of the model's weights (2 of 103) stay dense")
