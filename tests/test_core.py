"""Masking: what it masks, zeros after every step, exact updates, schedules, errors and the state round trip."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import CosineDecay
from tests.helpers import (
    SmallConvNet,
    active_counts,
    backward,
    inactive_values_are_zero,
    masking_for,
    small_mlp,
    train,
)

OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2, amsgrad=True),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=1e-3, momentum=0.9, centered=True, weight_decay=1e-4),
}


def test_masks_conv_and_linear_weights_only(model_factory) -> None:
    model = model_factory()
    masking, _ = masking_for(model, density=0.2)
    expected = {f"{name}.weight" for name, layer in model.named_modules() if isinstance(layer, (nn.Linear, nn.Conv2d))}
    assert set(masking.mask_dict) == expected
    assert all(mask.dtype == torch.bool for mask in masking.mask_dict.values())
    assert masking.masks is masking.mask_dict


def test_ddp_and_dataparallel_wrappers_are_unwrapped(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = small_mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        masking = Masking(optimizer, density=0.1)
        masking.add_module(nn.parallel.DistributedDataParallel(model))
        assert set(masking.mask_dict) == {"1.weight", "3.weight", "5.weight"}
        assert masking.module is model
    finally:
        dist.destroy_process_group()
    wrapped = nn.DataParallel(small_mlp())
    masking, _ = masking_for(wrapped, density=0.1)
    assert set(masking.mask_dict) == {"1.weight", "3.weight", "5.weight"}


def test_exclusions_before_init_solve_the_density_without_them() -> None:
    model = SmallConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masking = Masking(optimizer, density=0.1)
    masking.add_module(model, exclude=["fc", nn.Conv1d, "conv2.weight"])
    assert set(masking.mask_dict) == {"conv1.weight"}
    assert masking.stats.total_nonzero == round(0.1 * 54)


def test_removing_a_layer_after_init_makes_it_dense_and_trainable() -> None:
    model = small_mlp()
    masking, optimizer = masking_for(model, density=0.1)
    active_before = int(masking.mask_dict["3.weight"].sum())
    masking.remove_weight("3")
    masking.remove_type(nn.Conv2d)
    assert "3.weight" not in masking.mask_dict
    assert masking.total_params == 144 * 64 + 32 * 10
    train(model, optimizer, masking, 3)
    assert int((model[3].weight != 0).sum()) > active_before
    with pytest.raises(SparseLearningError, match="no masked weight named 'nope'"):
        masking.remove_weight("nope")


@pytest.mark.parametrize("density", [0, -0.1, 1.5, float("nan"), "dense"])
def test_bad_density_is_refused(density: object) -> None:
    optimizer = torch.optim.SGD(small_mlp().parameters(), lr=0.1)
    with pytest.raises(SparseLearningError, match=r"density must be .*\(0, 1\]"):
        Masking(optimizer, density=density)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keyword", "allowed"),
    [
        ("sparse_init", "random, erdos-renyi"),
        ("growth_mode", "absolute-gradient, momentum, random, none"),
        ("prune_mode", "magnitude, global-magnitude"),
        ("redistribution_mode", "momentum, grad, nonzero, none"),
    ],
)
def test_unknown_mode_names_list_the_allowed_values(keyword: str, allowed: str) -> None:
    optimizer = torch.optim.SGD(small_mlp().parameters(), lr=0.1)
    with pytest.raises(SparseLearningError, match=f"unknown {keyword} 'bogus'; allowed: {allowed}"):
        Masking(optimizer, **{keyword: "bogus"})


def test_model_with_nothing_to_mask_is_refused() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SparseLearningError, match="Sequential has no layer to mask"):
        Masking(optimizer).add_module(model)
    with pytest.raises(SparseLearningError, match="must be a torch.optim.Optimizer"):
        Masking("sgd")  # type: ignore[arg-type]
    with pytest.raises(SparseLearningError, match="update_frequency must be a whole number >= 1"):
        Masking(optimizer, update_frequency=0)


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("method", ["rigl", "set_"])
def test_masked_weights_and_optimizer_state_are_zero_after_every_step(model_factory, optimizer_name, method) -> None:
    model = model_factory()
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    masking = getattr(methods, method)(model, optimizer, density=0.2, total_steps=40, update_frequency=5)
    for step in range(30):
        backward(model, optimizer, step)
        masking.step()
        assert inactive_values_are_zero(masking), f"weights at step {step}"
        for name, mask in masking.mask_dict.items():
            for key, value in optimizer.state[masking.params[name]].items():
                if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                    assert bool((value[~mask] == 0).all()), f"{optimizer_name} state {key} of {name} at step {step}"


@pytest.mark.parametrize("method", ["rigl", "set_"])
def test_rigl_and_set_keep_every_layer_count_exact(model_factory, method) -> None:
    model = model_factory()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = getattr(methods, method)(model, optimizer, density=0.15, total_steps=60, update_frequency=3)
    before = active_counts(masking)
    changed = False
    masks = {n: m.clone() for n, m in masking.mask_dict.items()}
    train(model, optimizer, masking, 45)
    assert active_counts(masking) == before
    changed = any(not torch.equal(masks[n], masking.mask_dict[n]) for n in masks)
    assert changed, "the masks did change"
    assert masking.stats.total_nonzero == masking.baseline_nonzero


def test_snfs_keeps_the_total_exact_while_moving_weights_between_layers() -> None:
    model = SmallConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.snfs(model, optimizer, density=0.1, total_steps=60, update_frequency=4)
    before = active_counts(masking)
    train(model, optimizer, masking, 40)
    after = active_counts(masking)
    assert sum(after.values()) == sum(before.values())
    assert after != before
    assert inactive_values_are_zero(masking)


def test_a_fully_dense_layer_never_loses_weights() -> None:
    model = nn.Sequential(nn.Linear(100, 100, bias=False), nn.ReLU(), nn.Linear(100, 2, bias=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.rigl(
        model, optimizer, density=0.5, total_steps=40, sparse_init="erdos-renyi-kernel", update_frequency=2
    )
    assert masking.dense_layers == {"2.weight"}
    for step in range(20):
        inputs = torch.randn(8, 100, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        model(inputs).pow(2).sum().backward()
        masking.step()
        assert int(masking.mask_dict["2.weight"].sum()) == 200


def _rigl_single_layer(weight: torch.Tensor, optimizer_factory=None):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    model = nn.Sequential(layer)
    optimizer = (optimizer_factory or (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)))(model.parameters())
    masking = Masking(
        optimizer, CosineDecay(0.5, T_max=100), density=0.5, growth_mode="absolute-gradient", redistribution_mode="none"
    )
    masking.add_module(model)
    return model, optimizer, masking


def test_one_update_drops_smallest_active_and_grows_largest_gradient_at_zero() -> None:
    model, optimizer, masking = _rigl_single_layer(torch.arange(1.0, 17.0).view(4, 4))
    mask = masking.mask_dict["0.weight"].clone()
    weight = model[0].weight
    active_values = weight.detach()[mask]
    # one optimizer step to create momentum state everywhere it can exist
    backward_input = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    optimizer.zero_grad()
    model(backward_input).sum().backward()
    masking.step()
    before = weight.detach().clone()
    gradient = torch.zeros(4, 4)
    gradient.view(-1)[torch.arange(16)] = torch.arange(16.0) % 5 + torch.arange(16.0) / 100
    weight.grad = gradient.clone()
    masking.update_connections()
    new_mask = masking.mask_dict["0.weight"]
    assert int(new_mask.sum()) == int(mask.sum()) == 8
    # 4 dropped: the smallest |w| among the active ones (ceil(0.5 * 8))
    dropped_count = math.ceil(masking.prune_rate_decay.get_dr() * 8) if False else 4
    active_sorted = before[mask].abs().sort().values
    threshold = active_sorted[dropped_count - 1]
    kept = mask & (before.abs() > threshold)
    assert bool(new_mask[kept].all())
    grown = new_mask & ~kept
    eligible_scores = gradient.abs()[~kept]
    assert int(grown.sum()) == 4
    assert float(gradient.abs()[grown].min()) >= float(eligible_scores.topk(4).values.min())
    # grown weights start at zero with zero momentum; kept weights unchanged (no optimizer step)
    assert bool((weight.detach()[grown] == 0).all())
    assert bool((optimizer.state[weight]["momentum_buffer"][grown] == 0).all())
    assert torch.equal(weight.detach()[kept], before[kept])
    del active_values


def test_update_schedule_follows_frequency_start_and_end() -> None:
    optimizer = torch.optim.SGD(small_mlp().parameters(), lr=0.1)
    masking = Masking(optimizer, update_frequency=10, start_when=20, end_when=45)
    updates = []
    for step in range(60):
        masking.mask_step = step
        if masking.is_update_step():
            updates.append(step)
    assert updates == [20, 30, 40]
    assert not Masking(optimizer).is_update_step()


def test_step_replaces_the_optimizer_step_on_update_iterations() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.5, total_steps=100, update_frequency=2, drop_fraction=0.0)
    train(model, optimizer, masking, 2)  # steps 0 and 1
    bias_before = model[1].bias.detach().clone()
    backward(model, optimizer, 99)
    masking.step()  # step 2: an update with nothing dropped
    assert torch.equal(model[1].bias, bias_before), "no optimizer step on the update iteration"
    assert masking.mask_step == 3


def test_masked_step_equals_the_optimizer_on_masked_gradients() -> None:
    reference = SmallConvNet()
    model = copy.deepcopy(reference)
    masking, optimizer = masking_for(model, density=0.3)
    with torch.no_grad():
        for name, mask in masking.mask_dict.items():
            dict(reference.named_parameters())[name].mul_(mask)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for group in (optimizer.param_groups[0], ref_optimizer.param_groups[0]):
        group["weight_decay"] = 5e-4
    for step in range(4):
        backward(model, optimizer, step)
        masking.step()
        backward(reference, ref_optimizer, step)
        with torch.no_grad():
            for name, mask in masking.mask_dict.items():
                dict(reference.named_parameters())[name].grad.mul_(mask)
        ref_optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert optimizer.param_groups[0]["weight_decay"] == 5e-4, "the decay setting is restored"


def test_density_one_is_bit_identical_to_plain_training() -> None:
    reference = SmallConvNet()
    model = copy.deepcopy(reference)
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3, weight_decay=1e-4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    masking = methods.dense(model, optimizer)
    for step in range(3):
        backward(reference, ref_optimizer, step)
        ref_optimizer.step()
        backward(model, optimizer, step)
        masking.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_low_memory_mode_gives_identical_training() -> None:
    results = []
    for low_memory in (False, True):
        model = SmallConvNet()
        torch.manual_seed(0)
        model.load_state_dict(SmallConvNet().state_dict())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        masking = methods.rigl(model, optimizer, density=0.2, total_steps=40, update_frequency=4, low_memory=low_memory)
        train(model, optimizer, masking, 20)
        results.append((model.state_dict(), {n: m.clone() for n, m in masking.mask_dict.items()}))
    (weights_a, masks_a), (weights_b, masks_b) = results
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a)


def test_ever_active_tracks_every_weight_that_was_active() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.1, total_steps=40, update_frequency=2)
    union = {n: m.clone() for n, m in masking.mask_dict.items()}
    for step in range(20):
        backward(model, optimizer, step)
        masking.step()
        for name, mask in masking.mask_dict.items():
            union[name] |= mask
    assert all(torch.equal(union[n], masking.ever_active[n]) for n in union)
    assert sum(int(m.sum()) for m in union.values()) > masking.baseline_nonzero


def _run(model, optimizer, masking, steps, start):
    for step in range(start, start + steps):
        backward(model, optimizer, step)
        masking.step()


@pytest.mark.parametrize("method", ["rigl", "set_", "snfs", "pruning"])
def test_state_round_trip_resumes_bit_exactly(method: str) -> None:
    def build():
        torch.manual_seed(0)
        model = SmallConvNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        extra = {"interval": 3} if method == "pruning" else {"update_frequency": 3}
        masking = getattr(methods, method)(model, optimizer, density=0.2, total_steps=30, **extra)
        return model, optimizer, masking

    straight = build()
    _run(*straight, steps=20, start=0)

    first = build()
    _run(*first, steps=10, start=0)
    buffer = io.BytesIO()
    torch.save(
        {"model": first[0].state_dict(), "optimizer": first[1].state_dict(), "masking": first[2].state_dict()}, buffer
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = build()
    resumed[0].load_state_dict(saved["model"])
    resumed[1].load_state_dict(saved["optimizer"])
    resumed[2].load_state_dict(saved["masking"])
    assert resumed[2].mask_step == 10
    _run(*resumed, steps=10, start=10)

    assert all(torch.equal(a, b) for a, b in zip(straight[0].state_dict().values(), resumed[0].state_dict().values()))
    assert all(torch.equal(straight[2].mask_dict[n], resumed[2].mask_dict[n]) for n in straight[2].mask_dict)
    assert straight[2].prune_rate == resumed[2].prune_rate
    assert straight[2].stats.state_dict() == resumed[2].stats.state_dict()


def test_load_state_dict_refuses_another_model() -> None:
    masking, _ = masking_for(small_mlp(), density=0.1)
    other, _ = masking_for(SmallConvNet(), density=0.1)
    with pytest.raises(SparseLearningError, match="saved masks are for layers"):
        masking.load_state_dict(other.state_dict())
    with pytest.raises(SparseLearningError, match="not a Masking state"):
        masking.load_state_dict({"weights": 1})
    state = masking.state_dict()
    state["masks"]["1.weight"] = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(SparseLearningError, match="has shape"):
        masking.load_state_dict(state)


def test_mask_gradients_before_clipping() -> None:
    model = small_mlp()
    masking, optimizer = masking_for(model, density=0.1)
    backward(model, optimizer)
    masking.mask_gradients()
    for name, mask in masking.mask_dict.items():
        assert bool((masking.params[name].grad[~mask] == 0).all())


def test_mask_gradients_keeps_dense_gradients_on_update_iterations() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.1, total_steps=100, update_frequency=5)
    masking.mask_step = 5
    backward(model, optimizer)
    masking.mask_gradients()
    assert int((model[1].weight.grad != 0).sum()) > int(masking.mask_dict["1.weight"].sum())


def test_step_with_a_scaler_tolerates_an_earlier_unscale_for_clipping() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masking, optimizer = masking_for(model, density=0.5)

    class OnceOnly:
        def __init__(self) -> None:
            self.unscaled = False

        def unscale_(self, _optimizer) -> None:
            if self.unscaled:
                raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
            self.unscaled = True

        def step(self, opt) -> None:
            opt.step()

        def update(self) -> None:
            self.unscaled = False

    scaler = OnceOnly()
    backward(model, optimizer)
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    masking.step(scaler=scaler)
    assert not scaler.unscaled


@pytest.mark.parametrize("keep", [False, True])
def test_snfs_grown_weights_start_from_zero_momentum_unless_asked_to_keep_it(keep: bool) -> None:
    model = SmallConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.snfs(model, optimizer, density=0.1, total_steps=60, update_frequency=4, keep_grown_momentum=keep)
    train(model, optimizer, masking, 4)  # steps 0..3: momentum gathers at every position (dense gradients)
    before_masks = {name: mask.clone() for name, mask in masking.mask_dict.items()}
    before_momentum = {name: optimizer.state[masking.params[name]]["momentum_buffer"].clone() for name in before_masks}
    train(model, optimizer, masking, 1)  # step 4 is an update
    grown_any = False
    for name, before in before_masks.items():
        grown = masking.mask_dict[name] & ~before
        if not bool(grown.any()):
            continue
        grown_any = True
        momentum = optimizer.state[masking.params[name]]["momentum_buffer"]
        expected = before_momentum[name][grown] if keep else torch.zeros(int(grown.sum()))
        assert torch.equal(momentum[grown], expected)
        assert bool((momentum[grown] != 0).any()) == keep
        assert bool((model.state_dict()[name][grown] == 0).all())
    assert grown_any


def test_load_state_dict_refuses_masks_that_are_not_zeros_and_ones() -> None:
    masking, _ = masking_for(small_mlp(), density=0.1)
    state = masking.state_dict()
    state["masks"]["3.weight"] = torch.full((32, 64), 0.3)
    with pytest.raises(SparseLearningError, match=r"^saved mask for '3.weight' holds 2,048 values that are neither"):
        masking.load_state_dict(state)
    state["masks"]["3.weight"] = masking.mask_dict["3.weight"].to(torch.uint8)
    masking.load_state_dict(state)
    assert masking.mask_dict["3.weight"].dtype == torch.bool


def test_apply_mask_is_seen_by_the_weights_version_counters() -> None:
    masking, _ = masking_for(small_mlp(), density=0.1)
    weight = masking.params["1.weight"]
    before = weight._version
    masking.apply_mask()
    assert weight._version > before
