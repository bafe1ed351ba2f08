"""What Masking masks by default, and what include/exclude entries (patterns, names, classes) change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.masking.selection import chosen_by, masked_by_default, weight_candidates


class Tagger(nn.Module):
    """Token embedding, one Transformer encoder layer, a bidirectional GRU and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.block = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
        self.gru = nn.GRU(16, 8, batch_first=True, bidirectional=True)
        self.head = nn.Linear(16, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.block(self.embed(tokens)))
        return self.head(states[:, -1])


DEFAULT = [
    "block.self_attn.in_proj_weight",
    "block.self_attn.out_proj.weight",
    "block.linear1.weight",
    "block.linear2.weight",
    "gru.weight_ih_l0",
    "gru.weight_hh_l0",
    "gru.weight_ih_l0_reverse",
    "gru.weight_hh_l0_reverse",
    "head.weight",
]


def _masking(model: nn.Module, density: float = 0.2, **options) -> Masking:
    masking = Masking(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), density=density)
    masking.add_module(model, **options)
    return masking


def test_attention_projections_and_recurrent_weights_are_masked_by_default() -> None:
    masking = _masking(Tagger(), exclude=["embed"])
    assert list(masking.mask_dict) == DEFAULT
    assert not any(masked_by_default(nn.LayerNorm(4), name) for name in ("weight", "bias"))
    assert masked_by_default(nn.LSTM(4, 4, proj_size=2), "weight_hr_l0")


def test_separate_query_key_value_projections_are_masked() -> None:
    attention = nn.MultiheadAttention(8, 2, kdim=6, vdim=4)
    masking = _masking(nn.ModuleDict({"attn": attention}))
    assert list(masking.mask_dict) == [
        "attn.q_proj_weight", "attn.k_proj_weight", "attn.v_proj_weight", "attn.out_proj.weight",
    ]  # fmt: skip


def test_include_adds_an_embedding_by_class_or_pattern_and_the_density_stays_exact() -> None:
    by_class = _masking(Tagger(), include=[nn.Embedding])
    by_pattern = _masking(Tagger(), include=["emb*"])
    assert list(by_class.mask_dict) == list(by_pattern.mask_dict) == ["embed.weight", *DEFAULT]
    total = sum(mask.numel() for mask in by_class.mask_dict.values())
    assert by_class.stats.total_nonzero == round(0.2 * total)
    assert all(not r.reason for r in by_class.coverage), "every weight tensor is masked"


def test_exclude_by_container_class_keeps_everything_inside_it_dense() -> None:
    masking = _masking(Tagger(), exclude=["embed", nn.TransformerEncoderLayer])
    assert list(masking.mask_dict) == DEFAULT[4:]
    dense = {r.name: r.reason for r in masking.coverage if not r.masked}
    assert set(dense) == {"embed.weight", *DEFAULT[:4]} and set(dense.values()) == {"excluded"}


def test_exclude_by_glob_and_by_module_name() -> None:
    assert list(_masking(Tagger(), exclude=["embed", "gru.*_reverse"]).mask_dict) == [*DEFAULT[:6], "head.weight"]
    # A module's name covers everything inside it, its sub-modules too.
    assert list(_masking(Tagger(), exclude=["embed", "block.self_attn"]).mask_dict) == DEFAULT[2:]


@pytest.mark.parametrize(
    ("option", "entry", "message"),
    [
        ("include", "embedding", "include entry 'embedding' matches no weight tensor of the model; biases, norms and "
         "1-d parameters are never masked; closest names: embed, embed.weight"),
        ("include", "head.bias", "include entry 'head.bias' matches no weight tensor"),
        ("exclude", "gru.*_l1", "exclude entry 'gru.*_l1' matches no weight tensor of the model"),
    ],
)  # fmt: skip
def test_an_entry_that_matches_nothing_is_refused_in_one_line(option: str, entry: str, message: str) -> None:
    with pytest.raises(SparseLearningError) as caught:
        _masking(Tagger(), **{option: [entry]})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_partial_name_rule_of_the_seed_still_applies() -> None:
    model = Tagger()
    candidates = weight_candidates(model)
    assert [c.name for c in chosen_by(model, "linear", candidates)] == ["block.linear1.weight", "block.linear2.weight"]


def test_masked_attention_and_recurrent_weights_stay_exactly_zero_while_training() -> None:
    torch.manual_seed(0)
    model = Tagger()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.2, total_steps=30, update_frequency=4, include=["embed"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(13):
        optimizer.zero_grad()
        tokens = torch.randint(0, 30, (8, 7), generator=generator)
        nn.functional.cross_entropy(model(tokens), torch.randint(0, 5, (8,), generator=generator)).backward()
        masking.step()
    assert masking.mask_step == 13
    for name, mask in masking.mask_dict.items():
        weight = masking.params[name].detach()
        assert int(torch.count_nonzero(weight[~mask])) == 0, name
    assert masking.stats.total_nonzero == round(0.2 * masking.total_params)
    assert masking.check() is None


@pytest.mark.parametrize("sparse_init", ["random", "erdos-renyi", "erdos-renyi-kernel"])
def test_density_overrides_hold_per_tensor_and_the_total_stays_exact(sparse_init: str) -> None:
    model = Tagger()
    masking = Masking(torch.optim.SGD(model.parameters(), lr=0.1), density=0.3, sparse_init=sparse_init)
    masking.add_module(model, exclude=["embed"], density_overrides={"block.self_attn.*": 0.5, "head": 1.0})
    counts = {name: int(mask.sum()) for name, mask in masking.mask_dict.items()}
    assert counts["block.self_attn.in_proj_weight"] == round(0.5 * 48 * 16)
    assert counts["block.self_attn.out_proj.weight"] == round(0.5 * 16 * 16)
    assert counts["head.weight"] == 5 * 16
    assert masking.total_params == 3280 and sum(counts.values()) == round(0.3 * 3280)
    assert masking.density_overrides == {
        "block.self_attn.in_proj_weight": 0.5, "block.self_attn.out_proj.weight": 0.5, "head.weight": 1.0,
    }  # fmt: skip


def test_density_overrides_survive_drop_and_grow_updates() -> None:
    torch.manual_seed(0)
    model = Tagger()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    masking = methods.rigl(
        model, optimizer, density=0.2, total_steps=40, update_frequency=3, exclude=["embed"],
        density_overrides={"gru.*": 0.05},
    )  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        optimizer.zero_grad()
        tokens = torch.randint(0, 30, (8, 7), generator=generator)
        nn.functional.cross_entropy(model(tokens), torch.randint(0, 5, (8,), generator=generator)).backward()
        masking.step()
    assert masking.mask_step == 10
    for name in ("gru.weight_ih_l0", "gru.weight_hh_l0_reverse"):
        assert int(masking.mask_dict[name].sum()) == round(0.05 * masking.params[name].numel())
    assert masking.stats.total_nonzero == round(0.2 * masking.total_params)


@pytest.mark.parametrize(
    ("overrides", "options", "message"),
    [
        ({"head": 1.0, "block": 1.0}, {}, "density_overrides fix 2,128 active weights in 5 tensor(s), so the overall "
         "density can only be between 0.64878 and 1, not 0.2"),
        ({"gru.*": 0.0}, {}, "density_overrides['gru.*'] must be in (0, 1], got 0.0"),
        ({"embed": 0.5}, {}, "density_overrides entry 'embed' matches no masked weight tensor"),
        ({"head": 0.5, "head.weight": 0.3}, {}, "density_overrides name 'head.weight' twice (the second time as "
         "'head.weight')"),
        ({"head": 0.5}, {"sparse_init": "struct-random"}, "density_overrides need a sparse run (density < 1) with a "
         "uniform, ER or ERK sparse_init"),
    ],
)  # fmt: skip
def test_impossible_density_overrides_are_refused_in_one_line(overrides, options, message) -> None:
    model = Tagger()
    masking = Masking(torch.optim.SGD(model.parameters(), lr=0.1), density=0.2, **options)
    with pytest.raises(SparseLearningError) as caught:
        masking.add_module(model, exclude=["embed"], density_overrides=overrides)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


class TiedSequenceModel(nn.Module):
    """A Transformer encoder and an LSTM between an embedding and an output layer that share one matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 40, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.encoder(self.embed(tokens)))
        return self.head(states)


def test_hundreds_of_adamw_steps_keep_every_masked_weight_exactly_zero_and_the_tie_masked_once() -> None:
    torch.manual_seed(0)
    model = TiedSequenceModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    masking = methods.rigl(model, optimizer, density=0.15, total_steps=240, update_frequency=20)
    assert list(masking.mask_dict) == [
        "encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.0.self_attn.out_proj.weight",
        "encoder.layers.0.linear1.weight", "encoder.layers.0.linear2.weight",
        "encoder.layers.1.self_attn.in_proj_weight", "encoder.layers.1.self_attn.out_proj.weight",
        "encoder.layers.1.linear1.weight", "encoder.layers.1.linear2.weight",
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "head.weight",
    ]  # fmt: skip
    assert masking.records["head.weight"].aliases == ("head.weight", "embed.weight")
    tied = 40 * 16
    assert masking.total_params == 2 * (48 * 16 + 16 * 16 + 2 * 32 * 16) + 2 * 64 * 16 + tied
    generator = torch.Generator().manual_seed(5)
    changed = 0
    for _ in range(240):
        before = {name: mask.clone() for name, mask in masking.mask_dict.items()} if masking.is_update_step() else None
        optimizer.zero_grad()
        tokens = torch.randint(0, 40, (8, 6), generator=generator)
        logits = model(tokens[:, :-1])
        nn.functional.cross_entropy(logits.reshape(-1, 40), tokens[:, 1:].reshape(-1)).backward()
        masking.step()
        if before is not None:
            changed += sum(int((before[n] != m).sum()) for n, m in masking.mask_dict.items())
        for name, mask in masking.mask_dict.items():
            assert int(torch.count_nonzero(masking.params[name].detach()[~mask])) == 0, name
    assert changed > 0, "the updates moved weights"
    assert masking.stats.total_nonzero == round(0.15 * masking.total_params)
    assert int(torch.count_nonzero(model.embed.weight)) == int(masking.mask_dict["head.weight"].sum())
