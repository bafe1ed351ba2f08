"""SRigL trained a few steps: constant fan-in after the init and after every update, exact counts through
neuron ablation, determinism, and the builder's settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.funcs.fan_in import constant_fan_in, fan_ins
from tests.helpers import MODEL_FACTORIES, backward, inactive_values_are_zero, small_mlp


def _srigl(model: nn.Module, **options: object):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.srigl(model, optimizer, total_steps=40, update_frequency=2, **options)  # type: ignore[arg-type]
    return masking, optimizer


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_constant_fan_in_holds_after_the_init_and_after_every_update(family: str) -> None:
    torch.manual_seed(0)
    model = MODEL_FACTORIES[family]()
    masking, optimizer = _srigl(model, density=0.2)
    counts = dict(masking.stats.nonzeros_dict)
    assert all(constant_fan_in(mask) for mask in masking.mask_dict.values())
    updates = 0
    for step in range(30):
        backward(model, optimizer, step)
        update = masking.is_update_step()
        masking.step()
        updates += update
        for name, mask in masking.mask_dict.items():
            assert constant_fan_in(mask) is not None, (step, name, fan_ins(mask).tolist())
        assert dict(masking.stats.nonzeros_dict) == counts  # every layer keeps its count
    assert updates == 14  # steps 2, 4, ..., 28: every other step until 75% of 40
    assert inactive_values_are_zero(masking)


def test_ablation_keeps_the_overall_density_exact() -> None:
    torch.manual_seed(0)
    model = small_mlp()
    # drop fraction 0.5: RigL keeps about half the layer's weights, so it keeps no dead neuron's weight; at 0.3
    # it would keep some of theirs too, and those would count as salient
    masking, optimizer = _srigl(model, density=0.1, sparse_init="fan-in-random", drop_fraction=0.5)
    first = masking.mask_dict["1.weight"]
    k = constant_fan_in(first)
    total = masking.stats.total_nonzero
    assert (first.shape[0], k) == (64, 14)  # round(0.1 * 144 * 64) // 64
    with torch.no_grad():  # half the hidden neurons dead: tiny weights, a ReLU that never opens
        model[1].weight[:32] *= 1e-6
        model[1].bias[:32] = -1e3
    for step in range(3):  # step 2 updates the masks
        backward(model, optimizer, step)
        masking.step()
    after = masking.mask_dict["1.weight"]
    assert fan_ins(after)[:32].tolist() == [0] * 32  # the dead neurons are ablated
    assert fan_ins(after)[32:].tolist() == [28] * 32  # and the others share their budget: 896 / 32
    assert masking.stats.total_nonzero == total
    assert fan_ins(masking.mask_dict["5.weight"]).min() > 0  # the output layer keeps every neuron
    assert inactive_values_are_zero(masking)


def test_without_ablation_every_neuron_stays() -> None:
    torch.manual_seed(0)
    model = small_mlp()
    masking, optimizer = _srigl(model, density=0.1, sparse_init="fan-in-random", drop_fraction=0.5, ablation=False)
    assert masking.prune_mode == "srigl-no-ablation"
    with torch.no_grad():
        model[1].weight[:32] *= 1e-6
        model[1].bias[:32] = -1e3
    for step in range(3):
        backward(model, optimizer, step)
        masking.step()
    assert fan_ins(masking.mask_dict["1.weight"]).tolist() == [14] * 64


def test_srigl_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small_mlp()
        masking, optimizer = _srigl(model, density=0.1)
        for step in range(9):
            backward(model, optimizer, step)
            masking.step()
        runs.append({name: mask.clone() for name, mask in masking.mask_dict.items()})
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])


def test_the_builder_uses_the_paper_s_defaults() -> None:
    model = small_mlp()
    masking = methods.srigl(model, torch.optim.SGD(model.parameters(), lr=0.1))
    decay = masking.prune_rate_decay
    settings = (masking.prune_mode, masking.growth_mode, masking.redistribution_mode, masking.sparse_init)
    assert settings == ("srigl", "srigl", "none", "fan-in-erdos-renyi-kernel")
    assert (masking.update_frequency, masking.end_when, masking.density) == (100, 750, 0.1)
    assert (type(decay).__name__, getattr(decay, "prune_rate", None)) == ("CosineDecay", 0.3)
