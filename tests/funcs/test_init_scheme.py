"""Initial masks: ER/ERK densities against hand computations, exact totals, lottery tickets, channel-wise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError, SparseLearningWarning
from sparselearning.funcs.init_scheme import get_erdos_renyi_dist, registry, smallest_density
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
        "fan-in-random",
        "fan-in-erdos-renyi-kernel",
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


def _saved_masks_with(tmp_path: Path, layer: str, mask: torch.Tensor) -> Path:
    source, _ = masking_for(small_mlp(), density=0.1, seed=7)
    state = source.state_dict()
    state["masks"][layer] = mask
    path = tmp_path / "masks.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("init", ["lottery-ticket", "lottery-ticket-dist"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), r"holds 1 values that are neither 0 nor 1 \(e\.g\. nan\)"),
        (0.3, r"holds 1 values that are neither 0 nor 1 \(e\.g\. 0\.3"),
        (2, r"holds 1 values that are neither 0 nor 1 \(e\.g\. 2\)"),
    ],
)
def test_lottery_masks_must_hold_only_zeros_and_ones(tmp_path: Path, init: str, value: float, problem: str) -> None:
    mask = torch.zeros(10, 32, dtype=torch.float32 if isinstance(value, float) else torch.int64)
    mask[0, 0] = 1
    mask[3, 4] = value
    path = _saved_masks_with(tmp_path, "5.weight", mask)
    with pytest.raises(SparseLearningError, match=f"^lottery mask for '5.weight' in {path} {problem}"):
        masking_for_lottery(small_mlp(), path, init)


def test_a_lottery_mask_of_another_dtype_or_layout_is_refused(tmp_path: Path) -> None:
    path = _saved_masks_with(tmp_path, "5.weight", torch.ones(10, 32, dtype=torch.complex64))
    with pytest.raises(SparseLearningError, match="has dtype torch.complex64; masks must hold only 0/1"):
        masking_for_lottery(small_mlp(), path)
    path = _saved_masks_with(tmp_path, "5.weight", torch.ones(10, 32).to_sparse())
    with pytest.raises(SparseLearningError, match="is stored as a torch.sparse_coo tensor"):
        masking_for_lottery(small_mlp(), path)


def test_all_zero_lottery_masks_are_refused_and_one_empty_layer_is_named(tmp_path: Path) -> None:
    source, _ = masking_for(small_mlp(), density=0.1, seed=7)
    state = source.state_dict()
    state["masks"] = {name: torch.zeros_like(mask) for name, mask in state["masks"].items()}
    path = tmp_path / "empty.pt"
    torch.save(state, path)
    with pytest.raises(SparseLearningError) as caught:
        masking_for_lottery(small_mlp(), path, "lottery-ticket-dist")
    assert str(caught.value) == (
        f"lottery masks in {path}: no layer has an active weight, so the run would train an empty network"
    )
    # one layer emptied, as global magnitude pruning may leave a residual branch: kept, and named in a warning
    path = _saved_masks_with(tmp_path, "3.weight", torch.zeros(32, 64, dtype=torch.bool))
    with pytest.warns(SparseLearningWarning) as warned:
        masking, _ = masking_for_lottery(small_mlp(), path)
    assert [str(w.message) for w in warned] == [
        f"lottery masks in {path}: 1 layer(s) without an active weight: '3.weight'"
    ]
    assert int(masking.mask_dict["3.weight"].sum()) == 0


def test_a_float_lottery_mask_of_zeros_and_ones_is_used_as_is(tmp_path: Path) -> None:
    source, _ = masking_for(small_mlp(), density=0.1, seed=7)
    path = _saved_masks_with(tmp_path, "5.weight", source.mask_dict["5.weight"].float())
    masking, _ = masking_for_lottery(small_mlp(), path)
    assert all(torch.equal(masking.mask_dict[n], source.mask_dict[n]) for n in source.mask_dict)


def test_resume_refuses_non_finite_or_all_zero_weights_and_names_an_empty_layer() -> None:
    model = small_mlp()
    with torch.no_grad():
        model[5].weight[0, 0] = float("inf")
    with pytest.raises(SparseLearningError, match="^weights of '5.weight' hold NaN or infinite values"):
        masking_for(model, density=0.5, sparse_init="resume")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    with pytest.raises(SparseLearningError, match=r"^sparse_init 'resume' \(masks from the nonzero weights\): no lay"):
        masking_for(model, density=0.5, sparse_init="resume")
    model = small_mlp()
    with torch.no_grad():
        model[3].weight.zero_()
    with pytest.warns(SparseLearningWarning, match="1 layer\\(s\\) without an active weight: '3.weight'$"):
        masking_for(model, density=0.5, sparse_init="resume")


SMALL_MLP_SHAPES = {
    "1.weight": torch.Size([64, 144]),
    "3.weight": torch.Size([32, 64]),
    "5.weight": torch.Size([10, 32]),
}


@pytest.mark.parametrize(
    ("init", "smallest"),
    # uniform: of budget 18 the 320-weight layer's share is 0.497, the largest remainder (14.32, 3.18), so it
    # gets 1; of 17 its 0.470 loses to 13.52. ER/ERK: shares follow n_in + n_out (208, 96, 42): of budget 4 the
    # last gets 0.486, the largest remainder; of 3 only 0.364. 0.00152 * 11584 = 17.6 and 0.00031 * 11584 = 3.6
    # round to 18 and 4 (0.0015 and 0.0003 would round to 17 and 3).
    [("random", 0.00152), ("erdos-renyi", 0.00031), ("erdos-renyi-kernel", 0.00031)],
)
def test_smallest_density_is_the_lowest_that_gives_every_layer_a_weight(init: str, smallest: float) -> None:
    assert smallest_density(init, SMALL_MLP_SHAPES) == smallest
    masking, _ = masking_for(small_mlp(), density=smallest, sparse_init=init, allow_empty_layers=False)
    assert min(int(m.sum()) for m in masking.mask_dict.values()) >= 1
    total = 144 * 64 + 64 * 32 + 32 * 10
    below = (round(smallest * total) - 1) / total
    with pytest.raises(SparseLearningError, match=f"the smallest density .* is {smallest}$"):
        masking_for(small_mlp(), density=below, sparse_init=init, allow_empty_layers=False)


def test_a_density_that_empties_a_layer_is_refused_in_one_line_by_the_builders() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(SparseLearningError) as caught:
        methods.rigl(model, optimizer, density=2e-5, total_steps=100)
    assert str(caught.value) == (
        "density 2e-05 leaves layer '1.weight' (9,216 weights) and 2 more layers without an active weight under "
        "sparse_init 'random'; the smallest density that gives every masked layer at least one weight is 0.00152"
    )
    assert int(torch.count_nonzero(model[1].weight)) == 144 * 64, "the model's weights are left as they were"
    with pytest.raises(SparseLearningError, match="^density 1e-06 leaves layer '1.weight'.* is 0.00031$"):
        methods.static(model, optimizer, density=1e-6, sparse_init="erdos-renyi-kernel")
    bare, _ = masking_for(small_mlp(), density=1e-6)  # a bare Masking keeps allowing it unless asked
    assert bare.stats.total_nonzero == 0


def test_uniform_smallest_density_keeps_a_first_convolution_dense() -> None:
    shapes = {"0.weight": torch.Size([4, 1, 3, 3]), "1.weight": torch.Size([10, 400])}
    # kept dense, the 36-weight convolution takes 36 of a budget of 37 and leaves 1 to the Linear layer; sampled
    # like the others it needs a share above 0.5 of the budget (36 / 4036 * 57 = 0.508): 0.014 * 4036 = 56.5 -> 57
    assert smallest_density("random", shapes, first_is_conv=True) == 0.0091
    assert smallest_density("random", shapes, first_is_conv=False) == 0.014
