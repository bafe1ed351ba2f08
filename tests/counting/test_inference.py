"""Inference FLOPs: exact counts on hand-checkable layers, nothing left behind, the seed project's WRN figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.core import Masking
from sparselearning.counting import count_inference_flops
from sparselearning.counting.inference import layer_densities
from sparselearning.models import WideResNet


def test_linear_at_known_density_gives_the_exact_count() -> None:
    layer = nn.Sequential(nn.Linear(100, 30))
    flops = count_inference_flops(layer, torch.randn(4, 100), {"0.weight": 0.25})
    assert flops.dense == 2 * 100 * 30
    assert flops.sparse == 2 * 100 * 30 * 0.25
    assert flops.fraction == 0.25
    assert flops.per_layer == {"0.weight": 1500.0}


def test_conv_counts_every_output_position() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    flops = count_inference_flops(conv, torch.randn(2, 3, 10, 10), {"0.weight": 0.5})
    assert flops.dense == 2 * (3 * 3 * 3) * 8 * 10 * 10
    assert flops.sparse == flops.dense / 2


def test_unmasked_layers_count_dense_and_no_hook_is_left_behind() -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 5))
    flops = count_inference_flops(model, torch.randn(1, 10), {"0.weight": 0.1})
    assert flops.sparse == 2 * 10 * 10 * 0.1 + 2 * 10 * 5
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert model.training, "the model's mode is restored"


@pytest.mark.parametrize(("init", "expected"), [("random", 0.20), ("erdos-renyi-kernel", 0.35)])
def test_wrn_22_2_at_density_02_matches_the_seed_projects_figures(init: str, expected: float) -> None:
    model = WideResNet(depth=22, widen_factor=2, num_classes=10)
    masking = Masking(torch.optim.SGD(model.parameters(), lr=0.1), density=0.2, sparse_init=init)
    masking.add_module(model)
    flops = count_inference_flops(model, torch.randn(1, 3, 32, 32), layer_densities(masking.mask_dict))
    assert flops.fraction == pytest.approx(expected, abs=0.01)


def test_masking_flop_properties_follow_updates() -> None:
    from sparselearning import methods
    from sparselearning.counting import track_flops

    model = nn.Sequential(nn.Linear(20, 20, bias=False), nn.ReLU(), nn.Linear(20, 4, bias=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.snfs(model, optimizer, density=0.3, total_steps=100, update_frequency=5)
    with pytest.raises(Exception, match="track_flops"):
        _ = masking.inference_FLOPs
    track_flops(masking, torch.randn(1, 20))
    assert masking.dense_FLOPs == 2 * (20 * 20 + 20 * 4)
    assert masking.inference_FLOPs == pytest.approx(0.3 * masking.dense_FLOPs, abs=2)
    for step in range(40):
        optimizer.zero_grad()
        model(torch.randn(8, 20, generator=torch.Generator().manual_seed(step))).pow(2).sum().backward()
        masking.step()
    assert masking.avg_inference_FLOPs > 0
    assert min(masking.inference_FLOPs, 0.3 * 880) - 30 <= masking.avg_inference_FLOPs
