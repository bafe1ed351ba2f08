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


class _Sequence(nn.Module):
    """Embedding tied to the output layer, one Transformer encoder layer and an LSTM: every kind of weight."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.block = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 30, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.block(self.embed(tokens)))
        return self.head(states[:, -1])


def test_attention_recurrent_and_tied_weights_are_credited_with_their_own_products() -> None:
    from sparselearning.counting.inference import weight_flops

    model = _Sequence().eval()
    tokens = torch.randint(0, 30, (1, 7))
    names = [
        "block.self_attn.in_proj_weight", "block.self_attn.out_proj.weight", "block.linear1.weight",
        "block.linear2.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "head.weight",
    ]  # fmt: skip
    total, per_weight = weight_flops(model, tokens, names)
    # 2 x (rows x output x input) per weight: 7 tokens through q/k/v (48x16), out (16x16), the MLP (32x16, 16x32),
    # the LSTM's 4 gates (64x16 input, 64x16 recurrent), and the head on the last step only (30x16).
    assert per_weight == {
        "block.self_attn.in_proj_weight": 2 * 7 * 48 * 16,
        "block.self_attn.out_proj.weight": 2 * 7 * 16 * 16,
        "block.linear1.weight": 2 * 7 * 32 * 16,
        "block.linear2.weight": 2 * 7 * 16 * 32,
        "lstm.weight_ih_l0": 2 * 7 * 64 * 16,
        "lstm.weight_hh_l0": 2 * 7 * 64 * 16,
        "head.weight": 2 * 30 * 16,
    }
    attention_scores = 2 * 2 * 4 * 7 * 7 * 4  # QK^T and AV, 4 heads of width 4: products with no weight
    assert total == sum(per_weight.values()) + attention_scores
    assert torch.backends.mha.get_fastpath_enabled(), "the fast path is back on after the count"
    flops = count_inference_flops(model, tokens, {"block.self_attn.in_proj_weight": 0.25, "embed.weight": 0.5})
    assert flops.dense == total
    assert flops.sparse == total - 0.75 * 2 * 7 * 48 * 16 - 0.5 * 2 * 30 * 16, "the tie is found under either name"


def test_counting_changes_no_state_of_the_model() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    count_inference_flops(model, torch.randn(5, 4), {"0.weight": 0.5})
    assert model.training
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
