"""Initial masks: ER/ERK densities against hand computations, exact totals, lottery tickets, channel-wise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.funcs.init_scheme import get_erdos_renyi_dist, registry
from tests.helpers import SmallConvNet, masking_for, small_mlp


def test_registry_keys() -> None:
    assert set(registry) == {
        "random",
        "erdos-renyi",
        "erdos-renyi-kernel",
        "lottery-ticket",
        "lottery-ticket-dist",
        "resume",
        "struct-random",
        "struct-erdos-renyi",
        "struct-erdos-renyi-kernel",
    }


def two_linear() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 20, bias=False), nn.Linear(20, 5, bias=False))


def test_erk_densities_match_hand_computation() -> None:
    masking, _ = masking_for(two_linear(), density=0.2, sparse_init="erdos-renyi-kernel")
    # raw (20+10)/200 = 0.15 and (5+20)/100 = 0.25; eps = 60 / (0.15*200 + 0.25*100) = 60/55
    densities = get_erdos_renyi_dist(masking, is_kernel=True)
    assert densities["0.weight"] == pytest.approx(0.15 * 60 / 55)
    assert densities["1.weight"] == pytest.approx(0.25 * 60 / 55)
    # 32.73 and 27.27 weights: largest remainder gives 33 + 27 = 60 exactly
    assert {n: int(m.sum()) for n, m in masking.mask_dict.items()} == {"0.weight": 33, "1.weight": 27}


def test_erk_uses_kernel_dimensions_and_er_does_not() -> None:
    conv = nn.Sequential(nn.Conv2d(4, 8, 3, bias=False), nn.Conv2d(8, 8, 5, bias=False))
    masking, _ = masking_for(conv, density=0.3, sparse_init="erdos-renyi")
    er = get_erdos_renyi_dist(masking, is_kernel=False)
    erk = get_erdos_renyi_dist(masking, is_kernel=True)
    total = 8 * 4 * 9 + 8 * 8 * 25
    er_raw = {"0.weight": (8 + 4) / 32, "1.weight": (8 + 8) / 64}
    erk_raw = {"0.weight": (8 + 4 + 3 + 3) / (8 * 4 * 9), "1.weight": (8 + 8 + 5 + 5) / (8 * 8 * 25)}
    for raw, got in ((er_raw, er), (erk_raw, erk)):
        eps = 0.3 * total / (raw["0.weight"] * 288 + raw["1.weight"] * 1600)
        assert got == pytest.approx({name: eps * value for name, value in raw.items()})


def test_overflowing_layer_becomes_dense_and_epsilon_is_solved_again() -> None:
    model = nn.Sequential(nn.Linear(100, 100, bias=False), nn.Linear(100, 2, bias=False))
    masking, _ = masking_for(model, density=0.5, sparse_init="erdos-renyi-kernel")
    densities = get_erdos_renyi_dist(masking)
    assert densities["1.weight"] == 1.0
    assert densities["0.weight"] == pytest.approx((5100 - 200) / 10000)
    assert int(masking.mask_dict["1.weight"].sum()) == 200
    assert masking.stats.total_nonzero == 5100
    assert masking.dense_layers == {"1.weight"}


@pytest.mark.parametrize("init", ["random", "erdos-renyi", "erdos-renyi-kernel"])
@pytest.mark.parametrize("density", [0.01, 0.05, 0.1, 0.5, 0.9])
def test_overall_density_is_exact(init: str, density: float) -> None:
    masking, _ = masking_for(small_mlp(), density=density, sparse_init=init)
    total = 144 * 64 + 64 * 32 + 32 * 10
    assert masking.stats.total_nonzero == round(density * total)
    assert masking.total_params == total


def test_uniform_keeps_a_first_convolution_dense_and_the_total_exact() -> None:
    masking, _ = masking_for(SmallConvNet(), density=0.2, sparse_init="random")
    sizes = {n: m.numel() for n, m in masking.mask_dict.items()}
    assert int(masking.mask_dict["conv1.weight"].sum()) == sizes["conv1.weight"]
    assert masking.stats.total_nonzero == round(0.2 * sum(sizes.values()))
    rest = [n for n in sizes if n != "conv1.weight"]
    densities = [int(masking.mask_dict[n].sum()) / sizes[n] for n in rest]
    assert max(densities) - min(densities) < 0.01


def test_uniform_masks_a_first_linear_layer_like_the_others() -> None:
    masking, _ = masking_for(small_mlp(), density=0.1, sparse_init="random")
    assert abs(int(masking.mask_dict["1.weight"].sum()) - 0.1 * 144 * 64) <= 1


def test_masks_depend_on_seed_only() -> None:
    first, _ = masking_for(small_mlp(), density=0.1, seed=3)
    again, _ = masking_for(small_mlp(), density=0.1, seed=3)
    other, _ = masking_for(small_mlp(), density=0.1, seed=4)
    assert all(torch.equal(first.mask_dict[n], again.mask_dict[n]) for n in first.mask_dict)
    assert not all(torch.equal(first.mask_dict[n], other.mask_dict[n]) for n in first.mask_dict)


def test_resume_init_reads_nonzero_weights() -> None:
    model = small_mlp()
    with torch.no_grad():
        model[1].weight[:, ::2] = 0.0
    masking, _ = masking_for(model, density=0.5, sparse_init="resume")
    assert torch.equal(masking.mask_dict["1.weight"], model[1].weight != 0)
    assert int(masking.mask_dict["3.weight"].sum()) == 64 * 32


@pytest.mark.parametrize("as_string", [True, False])
def test_lottery_ticket_restores_saved_masks(tmp_path: Path, as_string: bool) -> None:
    source, _ = masking_for(small_mlp(), density=0.1, seed=7)
    path = tmp_path / "masks.pt"
    torch.save(source.state_dict(), path)
    fresh = small_mlp()
    masking, _ = masking_for_lottery(fresh, str(path) if as_string else path)
    assert all(torch.equal(masking.mask_dict[n], source.mask_dict[n]) for n in source.mask_dict)
    assert all(bool((masking.params[n][~m] == 0).all()) for n, m in masking.mask_dict.items())


def masking_for_lottery(model: nn.Module, path: object, init: str = "lottery-ticket"):
    from sparselearning.core import Masking

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masking = Masking(optimizer, density=1.0, sparse_init=init)
    masking.add_module(model, lottery_mask_path=path)
    return masking, optimizer


def test_lottery_ticket_from_a_training_checkpoint(tmp_path: Path) -> None:
    source, _ = masking_for(small_mlp(), density=0.05)
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "masking": source.state_dict(), "epoch": 3}, path)
    masking, _ = masking_for_lottery(small_mlp(), path)
    assert all(torch.equal(masking.mask_dict[n], source.mask_dict[n]) for n in source.mask_dict)


def test_lottery_ticket_dist_keeps_layer_counts_only(tmp_path: Path) -> None:
    source, _ = masking_for(small_mlp(), density=0.1, sparse_init="erdos-renyi-kernel")
    path = tmp_path / "masks.pt"
    torch.save(source.state_dict(), path)
    masking, _ = masking_for_lottery(small_mlp(), path, "lottery-ticket-dist")
    for name, mask in source.mask_dict.items():
        assert int(masking.mask_dict[name].sum()) == int(mask.sum())
    assert not torch.equal(masking.mask_dict["1.weight"], source.mask_dict["1.weight"])


def test_lottery_ticket_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError, match="not found"):
        masking_for_lottery(small_mlp(), tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SparseLearningError, match="cannot read lottery mask file"):
        masking_for_lottery(small_mlp(), corrupt)
    other, _ = masking_for(SmallConvNet(), density=0.1)
    mismatched = tmp_path / "other.pt"
    torch.save(other.state_dict(), mismatched)
    with pytest.raises(SparseLearningError, match="do not match the model"):
        masking_for_lottery(small_mlp(), mismatched)
    wrong_shape = tmp_path / "shape.pt"
    state, _ = masking_for(small_mlp(), density=0.1)
    saved = state.state_dict()
    saved["masks"]["1.weight"] = torch.ones(3, 3, dtype=torch.bool)
    torch.save(saved, wrong_shape)
    with pytest.raises(SparseLearningError, match="has shape"):
        masking_for_lottery(small_mlp(), wrong_shape)
    with pytest.raises(SparseLearningError, match="needs lottery_mask_path"):
        masking_for_lottery(small_mlp(), None)


@pytest.mark.parametrize("init", ["struct-random", "struct-erdos-renyi", "struct-erdos-renyi-kernel"])
def test_channel_wise_inits_mask_whole_kernels_and_keep_linear_dense(init: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.Flatten(), nn.Linear(32, 4))
    masking, _ = masking_for(model, density=0.3, sparse_init=init)
    assert "4.weight" not in masking.mask_dict
    for name in ("0.weight", "2.weight"):
        rows = masking.mask_dict[name].reshape(-1, 9)
        assert bool((rows.all(dim=1) | ~rows.any(dim=1)).all())
    n_fc, n_conv = 32 * 4, 16 * 3 * 9 + 32 * 16 * 9
    expected_conv = (0.3 * (n_conv + n_fc) - n_fc) / n_conv
    assert masking.stats.total_density == pytest.approx(expected_conv, abs=0.02)


def test_channel_wise_init_refuses_an_impossible_density() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 100))
    with pytest.raises(SparseLearningError, match="too low for channel-wise sparsity"):
        masking_for(model, density=0.1, sparse_init="struct-random")
    with pytest.raises(SparseLearningError, match="needs convolution layers"):
        masking_for(small_mlp(), density=0.5, sparse_init="struct-random")
