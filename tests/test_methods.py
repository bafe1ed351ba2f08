"""One call per method: paper defaults, exact densities, pruning's schedule end point, lottery restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from tests.helpers import SmallConvNet, inactive_values_are_zero, small_mlp, train


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def test_registry_names_every_method() -> None:
    assert set(methods.registry) == {
        "Dense",
        "Small_Dense",
        "Static",
        "SET",
        "SNFS",
        "RigL",
        "Struct_RigL",
        "Pruning",
        "Lottery",
    }


@pytest.mark.parametrize("name", ["Static", "SET", "SNFS", "RigL"])
def test_sparse_methods_train_at_exact_density(model_factory, name: str) -> None:
    model = model_factory()
    optimizer = _optimizer(model)
    builder = methods.registry[name]
    extra = {} if name == "Static" else {"total_steps": 30, "update_frequency": 4}
    masking = builder(model, optimizer, density=0.1, **extra)
    total = masking.total_params
    train(model, optimizer, masking, 25)
    assert masking.stats.total_nonzero == round(0.1 * total)
    assert inactive_values_are_zero(masking)


def test_paper_defaults() -> None:
    model = small_mlp()
    rigl = methods.rigl(model, _optimizer(model), density=0.1, total_steps=1000)
    assert (rigl.update_frequency, rigl.end_when, rigl.prune_rate) == (100, 750, pytest.approx(0.3))
    assert (rigl.prune_mode, rigl.growth_mode, rigl.redistribution_mode) == ("magnitude", "absolute-gradient", "none")
    snfs = methods.snfs(small_mlp(), _optimizer(model), total_steps=1000)
    assert snfs.dense_gradients and snfs.growth_mode == "momentum" and snfs.prune_rate == pytest.approx(0.5)
    assert methods.set_(small_mlp(), _optimizer(model), total_steps=1000).growth_mode == "random"


def test_static_masks_never_change() -> None:
    model = SmallConvNet()
    optimizer = _optimizer(model)
    masking = methods.static(model, optimizer, density=0.2, sparse_init="erdos-renyi-kernel")
    masks = {n: m.clone() for n, m in masking.mask_dict.items()}
    train(model, optimizer, masking, 20)
    assert all(torch.equal(masks[n], masking.mask_dict[n]) for n in masks)


def test_dense_and_small_dense() -> None:
    model = small_mlp()
    masking = methods.dense(model, _optimizer(model))
    assert masking.stats.total_density == 1.0
    assert methods.small_dense_width(300, 0.25) == 150
    assert methods.small_dense_width(100, 0.05) == 22
    assert methods.small_dense_width(3, 0.0001) == 1


def test_gradual_pruning_reaches_the_target_exactly_and_follows_the_cubic() -> None:
    model = SmallConvNet()
    optimizer = _optimizer(model)
    masking = methods.pruning(model, optimizer, density=0.1, total_steps=40, interval=2, start_fraction=0.1)
    assert masking.stats.total_density == 1.0
    densities = []
    for step in range(40):
        inputs = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), torch.zeros(8, dtype=torch.long)).backward()
        masking.step()
        densities.append(masking.stats.total_density)
    assert densities == sorted(densities, reverse=True), "density only goes down"
    assert densities[3] == 1.0, "nothing pruned before start_fraction"
    assert masking.stats.total_nonzero == round(0.1 * masking.total_params)
    # halfway through the schedule the density follows s(t) = s_f (1 - (1 - (t - t0)/(T - t0))^3)
    target = 1 - 0.9 * (1 - (1 - (18 - 4) / (30 - 4)) ** 3)
    assert densities[18] == pytest.approx(target, abs=0.01)
    assert inactive_values_are_zero(masking)


def _kernel_net() -> nn.Module:
    """Convolutions hold most weights: channel-wise methods fit at density 0.3."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)
    )


def test_struct_rigl_moves_whole_kernels() -> None:
    model = _kernel_net()
    optimizer = _optimizer(model)
    masking = methods.struct_rigl(model, optimizer, density=0.3, total_steps=30, update_frequency=3)
    before = {n: int(m.sum()) for n, m in masking.mask_dict.items()}
    train(model, optimizer, masking, 20)
    for name, mask in masking.mask_dict.items():
        rows = mask.reshape(mask.shape[0] * mask.shape[1], -1)
        assert bool((rows.all(dim=1) | ~rows.any(dim=1)).all())
        assert int(mask.sum()) == before[name]


def test_lottery_restart_reuses_the_final_masks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = small_mlp()
    optimizer = _optimizer(model)
    masking = methods.rigl(model, optimizer, density=0.1, total_steps=30, update_frequency=3)
    train(model, optimizer, masking, 20)
    torch.save(masking.state_dict(), tmp_path / "final.pt")
    torch.manual_seed(0)
    fresh = small_mlp()
    ticket = methods.lottery(fresh, _optimizer(fresh), tmp_path / "final.pt")
    assert all(torch.equal(ticket.mask_dict[n], masking.mask_dict[n]) for n in masking.mask_dict)
    assert ticket.density == pytest.approx(0.1, abs=1e-4)
    shuffled = methods.lottery(small_mlp(), _optimizer(fresh), tmp_path / "final.pt", shuffle=True)
    assert {n: int(m.sum()) for n, m in shuffled.mask_dict.items()} == {
        n: int(m.sum()) for n, m in masking.mask_dict.items()
    }


def test_bad_method_arguments() -> None:
    model = small_mlp()
    with pytest.raises(SparseLearningError, match="total_steps must be a whole number >= 1"):
        methods.rigl(model, _optimizer(model), total_steps=0)
    with pytest.raises(SparseLearningError, match="end_fraction must be in"):
        methods.rigl(model, _optimizer(model), total_steps=10, end_fraction=1.5)
    with pytest.raises(SparseLearningError, match="drop_fraction must be in"):
        methods.set_(model, _optimizer(model), total_steps=10, drop_fraction=-0.5)
    with pytest.raises(SparseLearningError, match="must be below end_fraction"):
        methods.pruning(model, _optimizer(model), total_steps=100, start_fraction=0.8, end_fraction=0.5)
    with pytest.raises(SparseLearningError, match="unknown criterion"):
        methods.struct_rigl(SmallConvNet(), _optimizer(model), criterion="median")


def test_every_method_accepts_exclude() -> None:
    for name in ("Dense", "Static", "SET", "RigL", "SNFS", "Pruning"):
        model = SmallConvNet()
        extra = {} if name in ("Dense", "Static") else {"total_steps": 100}
        if name == "Pruning":
            extra["interval"] = 10  # the default 100 leaves no pruning step in 75 steps, which is refused
        masking = methods.registry[name](model, _optimizer(model), exclude=["fc"], **extra)
        assert "fc.weight" not in masking.mask_dict, name


def test_each_named_builder_is_its_table_entry_built_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = small_mlp()
    torch.save(methods.static(source, _optimizer(source), density=0.2).state_dict(), tmp_path / "masks.pt")
    saved = {"lottery_mask_path": tmp_path / "masks.pt"}
    for name, builder in [*methods.registry.items(), ("RigL_reinit", methods.rigl_reinit)]:
        model = _kernel_net() if name == "Struct_RigL" else small_mlp()
        extra = {"density": 0.3} if name == "Struct_RigL" else {}
        extra |= saved if name in ("Lottery", "RigL_reinit") else {}
        state = {key: value.clone() for key, value in model.state_dict().items()}
        by_name = methods.build(name, model, _optimizer(model), **extra)
        model.load_state_dict(state)
        named = builder(model, _optimizer(model), **extra)
        assert repr(by_name) == repr(named), name
        assert by_name.state_dict()["config"] == named.state_dict()["config"], name
        assert all(torch.equal(by_name.mask_dict[n], named.mask_dict[n]) for n in named.mask_dict), name
