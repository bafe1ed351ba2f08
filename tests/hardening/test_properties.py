"""Property-based checks of the seed API over random shapes, densities and rates (hypothesis).

Each property is compared with a plain reference (a stable numpy sort) rather than restated: exact counts,
ties towards the lower index, zeros where masks are off, dropped/grown positions disjoint from kept ones,
and a `Masking` state that survives `state_dict()` -> bytes -> `load_state_dict()` unchanged.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from sparselearning.core import Masking
from sparselearning.funcs.decay import CosineDecay
from sparselearning.funcs.grow import abs_grad_growth, random_growth
from sparselearning.funcs.prune import magnitude_prune
from sparselearning.ops.select import apportion, bottomk_indices, sample_indices, topk_indices

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**31 - 1)
# Below 2048 entries selection sorts; up to 32768 it ranks candidates by their k-th value; above, it samples.
SIZES = st.one_of(st.integers(1, 64), st.integers(65, 4000), st.integers(33_000, 80_000))


def _scores(size: int, levels: int | None, layout: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random scores; `levels` distinct integer values force ties, `layout` can sort them adversarially."""
    generator = torch.Generator().manual_seed(seed)
    if levels is None:
        values = torch.randn(size, generator=generator, dtype=torch.float64)
    else:
        values = torch.randint(-levels, levels + 1, (size,), generator=generator, dtype=torch.float64)
    if layout != "random":
        values = torch.sort(values, descending=layout == "descending").values
    return values.to(dtype)


def _stable_first(keys: np.ndarray, count: int) -> torch.Tensor:
    """Reference: positions of the `count` smallest keys, ties by position, ascending."""
    return torch.from_numpy(np.sort(np.argsort(keys, kind="stable")[:count]).astype(np.int64))


@FAST
@given(
    size=SIZES,
    fraction=st.floats(0, 1),
    levels=st.sampled_from([None, 0, 1, 3, 50]),
    layout=st.sampled_from(["random", "ascending", "descending"]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64]),
    seed=SEEDS,
)
def test_topk_and_bottomk_are_exact_with_ties_to_the_lower_index(size, fraction, levels, layout, dtype, seed) -> None:
    scores = _scores(size, levels, layout, dtype, seed)
    k = round(fraction * size)
    values = scores.double().numpy()
    top, bottom = topk_indices(scores, k), bottomk_indices(scores, k)
    for chosen, expected in ((top, _stable_first(-values, k)), (bottom, _stable_first(values, k))):
        assert chosen.dtype == torch.int64
        assert torch.equal(chosen, expected)
    assert torch.equal(topk_indices(scores.view(1, -1), k + size), torch.arange(size))


@FAST
@given(size=SIZES, eligible_fraction=st.floats(0, 1), fraction=st.floats(0, 1.2), seed=SEEDS)
def test_sample_indices_exact_distinct_eligible_and_reproducible(size, eligible_fraction, fraction, seed) -> None:
    eligible = torch.rand(size, generator=torch.Generator().manual_seed(seed)) < eligible_fraction
    available = int(eligible.sum())
    k = round(fraction * size)
    chosen = sample_indices(eligible, k, torch.Generator().manual_seed(seed + 1))
    assert chosen.numel() == min(k, available)
    assert bool((chosen[1:] > chosen[:-1]).all()), "strictly ascending, hence distinct"
    assert bool(eligible[chosen].all())
    assert torch.equal(chosen, sample_indices(eligible, k, torch.Generator().manual_seed(seed + 1)))


WEIGHTS = st.one_of(
    st.floats(0, 10), st.floats(-1, 0), st.sampled_from([0.0, float("nan"), float("inf"), -float("inf")])
)


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(0, 400),
    entries=st.lists(st.tuples(WEIGHTS, st.integers(0, 60)), min_size=1, max_size=12),
)
def test_apportion_sums_exactly_within_capacities(total, entries) -> None:
    weights = [weight for weight, _ in entries]
    capacities = [capacity for _, capacity in entries]
    shares = apportion(total, weights, capacities)
    assert sum(shares) == min(total, sum(capacities))
    assert all(0 <= share <= capacity for share, capacity in zip(shares, capacities))
    positive = [i for i, weight in enumerate(weights) if weight > 0 and math.isfinite(weight)]
    if any(shares[i] > 0 for i in range(len(weights)) if i not in positive):
        assert all(shares[i] == capacities[i] for i in positive), "non-positive weights only take the overflow"
    if positive and all(capacities[i] >= total for i in positive):
        mass = sum(weights[i] for i in positive)
        assert all(abs(shares[i] - total * weights[i] / mass) < 1 + 1e-9 for i in positive)


# ------------------------------------------------------------------------------------------ masks of models

LAYERS = st.lists(
    st.one_of(
        st.tuples(st.just("linear"), st.integers(1, 40), st.integers(1, 40)),
        st.tuples(st.just("conv"), st.integers(1, 6), st.integers(1, 8), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=4,
)
DENSITIES = st.one_of(st.floats(0.01, 1.0), st.sampled_from([1.0, 0.5, 0.001]))


def _model(layers: list[tuple]) -> nn.Module:
    """Layers of the drawn shapes (never called: Masking only needs their weights)."""
    modules = [
        nn.Linear(spec[1], spec[2]) if spec[0] == "linear" else nn.Conv2d(spec[1], spec[2], spec[3]) for spec in layers
    ]
    return nn.Sequential(*modules)


def _masking(model: nn.Module, density: float, init: str = "random", seed: int = 0, **options) -> Masking:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = Masking(
        optimizer,
        density=density,
        sparse_init=init,
        prune_mode="magnitude",
        growth_mode="none",
        redistribution_mode="none",
        seed=seed,
        **options,
    )
    masking.add_module(model)
    return masking


@FAST
@given(
    layers=LAYERS,
    density=DENSITIES,
    init=st.sampled_from(["random", "erdos-renyi", "erdos-renyi-kernel"]),
    seed=SEEDS,
)
def test_init_schemes_hold_exactly_the_budget_and_zero_the_rest(layers, density, init, seed) -> None:
    torch.manual_seed(seed)
    model = _model(layers)
    masking = _masking(model, density, init, seed=seed)
    sizes = {name: weight.numel() for name, weight in masking.params.items()}
    counts = {name: int(mask.sum()) for name, mask in masking.mask_dict.items()}
    assert sum(counts.values()) == round(density * sum(sizes.values()))
    for name, mask in masking.mask_dict.items():
        assert mask.dtype == torch.bool and mask.shape == masking.params[name].shape
        assert bool((masking.params[name].detach()[~mask] == 0).all())
    if init == "random":
        names = list(sizes)
        first_dense = (
            density < 1 and len(names) > 1 and layers[0][0] == "conv" and sizes[names[0]] < sum(counts.values())
        )
        rest = names[1:] if first_dense else names
        if first_dense:
            assert counts[names[0]] == sizes[names[0]]
        budget = sum(counts[name] for name in rest)
        everywhere = sum(sizes[name] for name in rest)
        assert all(abs(counts[name] - budget * sizes[name] / everywhere) < 1 for name in rest)
    # One step on a loss that reaches every weight: masked weights and their momentum stay exactly zero.
    sum((parameter**2).sum() for parameter in model.parameters()).backward()
    masking.step()
    for name, mask in masking.mask_dict.items():
        weight = masking.params[name]
        assert bool((weight.detach()[~mask] == 0).all())
        assert bool((masking.optimizer.state[weight]["momentum_buffer"][~mask] == 0).all())
    again = _masking(_model(layers), density, init, seed=seed)
    assert all(torch.equal(again.mask_dict[name], mask) for name, mask in masking.mask_dict.items())


def _fill(tensor: torch.Tensor, levels: int | None, generator: torch.Generator) -> None:
    """Random values in place; with `levels`, few distinct magnitudes (many ties)."""
    if levels is None:
        values = torch.randn(tensor.shape, generator=generator)
    else:
        values = torch.randint(-levels, levels + 1, tensor.shape, generator=generator).float()
    tensor.copy_(values)


@FAST
@given(
    layers=LAYERS,
    density=DENSITIES,
    rate=st.floats(0, 1),
    levels=st.sampled_from([None, 1, 4]),
    seed=SEEDS,
)
def test_magnitude_prune_drops_exactly_the_smallest_active(layers, density, rate, levels, seed) -> None:
    masking = _masking(_model(layers), density, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for name, weight in masking.params.items():
        with torch.no_grad():
            _fill(weight, levels, generator)
            weight.mul_(masking.mask_dict[name])
        mask = masking.mask_dict[name].clone()
        masking.name2prune_rate = {name: rate}
        kept = magnitude_prune(masking, masking.mask_dict[name], weight, name)
        assert torch.equal(masking.mask_dict[name], mask), "the input mask is not modified"
        dropped = mask & ~kept
        assert not bool((dropped & kept).any()) and torch.equal(dropped | kept, mask)
        active = torch.nonzero(mask.reshape(-1)).view(-1)
        count = min(active.numel(), math.ceil(rate * active.numel()))
        assert int(dropped.sum()) == count
        magnitudes = weight.detach().reshape(-1)[active].abs().numpy()
        expected = active[_stable_first(magnitudes, count)]
        assert torch.equal(torch.nonzero(dropped.reshape(-1)).view(-1), torch.sort(expected).values)


@FAST
@given(
    layers=LAYERS,
    density=DENSITIES,
    fraction=st.floats(0, 1.2),
    levels=st.sampled_from([None, 0, 2]),
    seed=SEEDS,
)
def test_growth_adds_exactly_the_asked_count_at_inactive_positions(layers, density, fraction, levels, seed) -> None:
    masking = _masking(_model(layers), density, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for name, weight in masking.params.items():
        weight.grad = torch.empty_like(weight)
        _fill(weight.grad, levels, generator)
        mask = masking.mask_dict[name].clone()
        inactive = torch.nonzero(~mask.reshape(-1)).view(-1)
        count = round(fraction * mask.numel())
        expected_count = min(count, inactive.numel())

        by_gradient = abs_grad_growth(masking, name, count, weight)
        randomly = random_growth(masking, name, count, weight)
        assert torch.equal(masking.mask_dict[name], mask), "the current mask is not modified"
        for grown_mask in (by_gradient, randomly):
            grown = grown_mask & ~mask
            assert torch.equal(grown_mask & mask, mask), "every kept position stays"
            assert int(grown.sum()) == expected_count
        gradients = weight.grad.reshape(-1)[inactive].abs().numpy()
        expected = torch.sort(inactive[_stable_first(-gradients, expected_count)]).values
        assert torch.equal(torch.nonzero((by_gradient & ~mask).reshape(-1)).view(-1), expected)
        assert torch.equal(random_growth(masking, name, count, weight), randomly), "seeded by (seed, step, layer)"


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN here


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    widths=st.lists(st.integers(1, 24), min_size=2, max_size=4),
    density=st.floats(0.05, 1.0),
    growth=st.sampled_from(["random", "absolute-gradient", "momentum"]),
    redistribution=st.sampled_from(["none", "momentum"]),
    steps=st.integers(0, 7),
    seed=SEEDS,
)
def test_masking_state_round_trip(widths, density, growth, redistribution, steps, seed) -> None:
    def build(model_seed: int, masking_seed: int) -> tuple[nn.Module, Masking]:
        torch.manual_seed(model_seed)
        model = _mlp(widths)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        masking = Masking(
            optimizer,
            CosineDecay(0.5, T_max=6),
            density=density,
            sparse_init="erdos-renyi",
            growth_mode=growth,
            redistribution_mode=redistribution,
            seed=masking_seed,
            update_frequency=2,
            end_when=6,
        )
        masking.add_module(model)
        return model, masking

    model, masking = build(seed, seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        masking.optimizer.zero_grad()
        inputs = torch.randn(8, widths[0], generator=generator)
        model(inputs).square().mean().backward()
        masking.step()
    buffer = io.BytesIO()
    torch.save(masking.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    _, other = build(seed + 1, seed + 2)  # other weights, other initial masks
    other.load_state_dict(state)
    for key in ("masks", "ever_active"):
        assert _same(other.state_dict()[key], masking.state_dict()[key])
    assert other.mask_step == masking.mask_step == steps
    assert (other.baseline_nonzero, other.total_params) == (masking.baseline_nonzero, masking.total_params)
    assert other.stats.state_dict() == masking.stats.state_dict()
    mine = {k: v for k, v in masking.state_dict().items() if k != "config"}
    theirs = {k: v for k, v in other.state_dict().items() if k != "config"}
    assert _same(theirs, mine)
    for name, mask in other.mask_dict.items():
        assert bool((other.params[name].detach()[~mask] == 0).all())


def test_load_state_dict_refuses_masks_of_another_shape() -> None:
    masking = _masking(_model([("linear", 4, 3)]), 0.5)
    state = masking.state_dict()
    state["masks"]["0.weight"] = torch.ones(3, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"saved mask for '0.weight' has shape \(3, 5\), the weight has \(3, 4\)"):
        masking.load_state_dict(state)
