"""SRigL's rules on hand-built layers: the constant fan-in init, saliency, ablation, drop and regrowth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.funcs import grow, init_scheme, prune
from sparselearning.funcs.fan_in import alive_count, constant_fan_in, fan_ins, srigl_growth, srigl_prune
from sparselearning.funcs.init_scheme import constant_fan_in_counts
from tests.helpers import masking_for


def test_the_rules_are_registered_under_their_names() -> None:
    assert prune.registry["srigl"] is srigl_prune
    assert grow.registry["srigl"] is srigl_growth
    assert {"fan-in-random", "fan-in-erdos-renyi-kernel", "srigl-no-ablation"} <= set(init_scheme.registry) | set(
        prune.registry
    )


def test_constant_fan_in_reads_alive_neurons_only() -> None:
    mask = torch.tensor([[True, True, False], [False, False, False], [False, True, True]])
    assert fan_ins(mask).tolist() == [2, 0, 2]
    assert constant_fan_in(mask) == 2
    assert constant_fan_in(torch.tensor([[True, False], [True, True]])) is None
    assert constant_fan_in(torch.zeros(2, 3, dtype=torch.bool)) == 0
    conv = torch.zeros(2, 3, 2, 2, dtype=torch.bool)  # an output channel's fan-in spans channels and kernel
    conv[0, 0, 0, 0] = conv[0, 2, 1, 1] = conv[1, 1, 0, 1] = conv[1, 1, 1, 0] = True
    assert constant_fan_in(conv) == 2


@pytest.mark.parametrize(
    ("total", "neurons", "wanted", "dense_fan_in", "alive"),
    [
        (12, 6, 5, 10, 6),  # 5 does not divide 12: the next count that does
        (12, 6, 4, 10, 4),
        (12, 6, 4, 2, 6),  # 12 weights over 4 neurons would exceed the dense fan-in 2
        (7800, 300, 290, 784, 300),  # no divisor of 7800 in 290..299: nobody is ablated
        (7800, 300, 250, 784, 260),
        (0, 5, 3, 4, 0),
    ],
)
def test_alive_count_shares_the_layer_exactly(
    total: int, neurons: int, wanted: int, dense_fan_in: int, alive: int
) -> None:
    assert alive_count(total, neurons, wanted, dense_fan_in) == alive
    assert alive == 0 or total % alive == 0


def test_alive_count_is_none_when_no_count_of_neurons_shares_the_layer() -> None:
    assert alive_count(7, 4, 4, 1) is None


def test_constant_fan_in_counts_round_to_whole_neurons_within_the_total() -> None:
    shapes = {"a": torch.Size([10, 20]), "b": torch.Size([3, 20])}
    assert constant_fan_in_counts({"a": 100, "b": 30}, shapes) == {"a": 10, "b": 10}
    # floors 10 and 10 hold 130 of 136: the 6 left buy two more inputs for each of b's 3 neurons
    assert constant_fan_in_counts({"a": 105, "b": 31}, shapes) == {"a": 10, "b": 12}
    # at least one input per neuron, at most the dense fan-in
    assert constant_fan_in_counts({"a": 0, "b": 60}, shapes) == {"a": 1, "b": 20}


def _two_layers(first: torch.Tensor, second_mask: torch.Tensor):
    """Linear(6, 4) then the output Linear(4, 2), no biases, with the given first weight and masks."""
    model = nn.Sequential(nn.Linear(6, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(first)
        model[1].weight.fill_(1.0)
    masking, _ = masking_for(model, density=1.0)
    masking.mask_dict["0.weight"] = first != 0
    masking.mask_dict["1.weight"] = second_mask
    masking._refresh()
    return masking


FIRST = torch.tensor(
    [
        [5.0, 4.0, 3.0, 0.0, 0.0, 0.0],
        [0.0, 6.0, 0.0, 7.0, 0.0, 8.0],
        [9.0, 0.0, 0.0, 0.0, 2.5, 3.5],
        [0.0, 0.0, 1e-3, 2e-3, 3e-3, 0.0],  # a neuron of tiny weights and no gradient: nothing salient
    ]
)
GRAD = torch.tensor(
    [
        [0.0, 0.0, 0.0, 1.0, 9.0, 2.0],
        [3.0, 0.0, 8.0, 0.0, 1.0, 0.0],
        [0.0, 7.0, 0.5, 0.5, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)


def test_a_neuron_without_salient_weights_is_ablated_and_its_budget_shared() -> None:
    masking = _two_layers(FIRST, torch.tensor([[True, True, False, False], [False, True, True, False]]))
    weight = masking.params["0.weight"]
    weight.grad = GRAD.clone()
    masking.name2prune_rate = {"0.weight": 0.25, "1.weight": 0.0}
    # L = 12, drop 3: RigL keeps the 9 largest |w| (neurons 0-2) and would regrow at |grad| 9, 8, 7 (neurons 0-2);
    # neuron 3 holds 0 < 0.3 * 3 salient weights and is ablated; 3 neurons share 12 weights: k = 4
    dropped = srigl_prune(masking, masking.mask_dict["0.weight"], weight, "0.weight")
    assert torch.equal(dropped, (FIRST != 0) & torch.tensor([True, True, True, False]).view(-1, 1))
    assert torch.equal(dropped[3], torch.zeros(6, dtype=torch.bool))
    masking.mask_dict["0.weight"] = dropped
    grown = srigl_growth(masking, "0.weight", 3, weight)
    expected = (FIRST != 0) | (GRAD >= 7.0)
    expected[3] = False
    assert torch.equal(grown, expected)
    assert fan_ins(grown).tolist() == [4, 4, 4, 0]
    assert int(grown.sum()) == 12  # the layer's count is what it was


def test_the_drop_is_rigls_over_the_layer_then_each_neuron_regrows_to_k() -> None:
    first = FIRST.clone()
    first[3] = torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0, 0.0])  # no longer tiny: neuron 3 stays
    masking = _two_layers(first, torch.tensor([[True, True, False, False], [False, True, True, False]]))
    weight = masking.params["0.weight"]
    weight.grad = GRAD.clone()
    masking.name2prune_rate = {"0.weight": 0.25, "1.weight": 0.0}
    dropped = srigl_prune(masking, masking.mask_dict["0.weight"], weight, "0.weight")
    # the 3 smallest |w| of the layer (1.0, 2.0, 2.5) go, whichever neuron holds them
    assert fan_ins(dropped).tolist() == [3, 3, 2, 1]
    masking.mask_dict["0.weight"] = dropped
    grown = srigl_growth(masking, "0.weight", 3, weight)
    assert fan_ins(grown).tolist() == [3, 3, 3, 3]
    assert bool(grown[2, 1])  # neuron 2 regrows at its largest |gradient| (7.0)
    assert bool(grown[3, 0])  # neuron 3's gradients are all zero: the lowest inactive indices, 0 then 1
    assert bool(grown[3, 1])


def test_the_output_layer_is_never_ablated() -> None:
    second = torch.tensor([[True, True, False, False], [False, True, True, False]])
    masking = _two_layers(FIRST, second)
    weight = masking.params["1.weight"]
    with torch.no_grad():
        weight[1] = 1e-6
    weight.grad = torch.zeros(2, 4)
    masking.name2prune_rate = {"0.weight": 0.0, "1.weight": 0.5}
    dropped = srigl_prune(masking, masking.mask_dict["1.weight"], weight, "1.weight")
    masking.mask_dict["1.weight"] = dropped
    assert fan_ins(srigl_growth(masking, "1.weight", int(second.sum() - dropped.sum()), weight)).tolist() == [2, 2]


def test_growth_refuses_a_mask_its_prune_rule_did_not_leave() -> None:
    masking = _two_layers(FIRST, torch.tensor([[True, True, False, False], [False, True, True, False]]))
    weight = masking.params["0.weight"]
    weight.grad = GRAD.clone()
    with pytest.raises(SparseLearningError, match="^growth_mode 'srigl' on layer '0.weight' grows what its prune"):
        srigl_growth(masking, "0.weight", 3, weight)
    masking.name2prune_rate = {"0.weight": 0.25, "1.weight": 0.0}
    masking.mask_dict["0.weight"] = srigl_prune(masking, masking.mask_dict["0.weight"], weight, "0.weight")
    with pytest.raises(SparseLearningError, match="must grow 3 weights to keep every neuron at fan-in 4, but was"):
        srigl_growth(masking, "0.weight", 5, weight)


def test_a_layer_no_neuron_count_can_share_is_refused() -> None:
    masking = _two_layers(FIRST, torch.tensor([[True, True, True, False], [False, True, True, False]]))
    weight = masking.params["1.weight"]
    weight.grad = torch.ones(2, 4)
    masking.name2prune_rate = {"0.weight": 0.0, "1.weight": 0.3}
    with pytest.raises(SparseLearningError, match="^layer '1.weight' holds 5 active weights, which its 2 neurons"):
        srigl_prune(masking, masking.mask_dict["1.weight"], weight, "1.weight")


@pytest.mark.parametrize("sparse_init", ["fan-in-random", "fan-in-erdos-renyi-kernel"])
def test_the_fan_in_init_gives_every_neuron_the_same_fan_in(sparse_init: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 20), nn.Linear(20, 5))
    masking, _ = masking_for(model, density=0.2, sparse_init=sparse_init)
    budget = round(0.2 * masking.total_params)
    assert budget - min(mask.shape[0] for mask in masking.mask_dict.values()) < masking.stats.total_nonzero <= budget
    for mask in masking.mask_dict.values():
        assert fan_ins(mask).min() >= 1
        assert constant_fan_in(mask) is not None
    again, _ = masking_for(model, density=0.2, sparse_init=sparse_init)
    assert all(torch.equal(again.mask_dict[name], mask) for name, mask in masking.mask_dict.items())
