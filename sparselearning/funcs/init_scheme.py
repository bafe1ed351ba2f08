"""Initial masks: uniform, Erdos-Renyi (ER), Erdos-Renyi-Kernel (ERK), lottery tickets, resume, channel-wise.

Each scheme fills `masking.mask_dict` with bool masks. Densities are turned into whole per-layer counts by
largest-remainder rounding, so the network holds exactly `round(density * masked weights)` active weights;
positions are drawn from the masking's (seed, layer) generator, identical on every process and device.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sparselearning.errors import SparseLearningError, first_line
from sparselearning.funcs._layers import expand_kernel_mask, kernel_view
from sparselearning.misuse import warn_user
from sparselearning.ops.select import apportion, sample_indices
from sparselearning.runs.masks import PACKED_KEY, unpack_masks

if TYPE_CHECKING:
    from collections.abc import Callable

    from sparselearning.masking.view import MaskingView as Masking

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
INIT_STREAM = 2  # purpose key of the random stream used for initial masks
SHUFFLE_STREAM = 3  # lottery-ticket-dist: must differ from INIT_STREAM, or a same-seed reshuffle repeats the mask


def _raw_erdos_renyi(shape: torch.Size, is_kernel: bool) -> float:
    if is_kernel:
        return sum(shape) / math.prod(shape)
    n_out, n_in = shape[0], shape[1]
    return (n_in + n_out) / (n_in * n_out)


def erdos_renyi_densities(shapes: dict[str, torch.Size], density: float, is_kernel: bool) -> dict[str, float]:
    """Layer densities `eps * raw_l` with overflowing layers made dense and `eps` solved again.

    :param shapes: weight name -> shape
    :param density: overall density to reach
    :param is_kernel: ERK (True) counts every dimension; ER (False) only output and input sizes
    :return: weight name -> density in (0, 1]
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: _raw_erdos_renyi(shape, is_kernel) for name, shape in shapes.items()}
    budget = density * sum(sizes.values())
    dense: set[str] = set()
    epsilon = 0.0
    while len(dense) < len(shapes):
        sparse = [name for name in shapes if name not in dense]
        rest = budget - sum(sizes[name] for name in dense)
        epsilon = rest / sum(raw[name] * sizes[name] for name in sparse)
        highest = max(raw[name] for name in sparse)
        if epsilon * highest <= 1.0:
            break
        dense.update(name for name in sparse if raw[name] == highest)
    return {name: 1.0 if name in dense else min(1.0, epsilon * raw[name]) for name in shapes}


def get_erdos_renyi_dist(masking: Masking, is_kernel: bool = True) -> dict[str, float]:
    """Get layer-wise densities distributed according to ER or ERK (erdos-renyi or erdos-renyi-kernel).

    Ensures resulting densities do not cross 1 for any layer.

    :param masking: Masking instance
    :param is_kernel: use ERK (True), ER (False)
    :return: Layer-wise density dict
    """
    shapes = {name: mask.shape for name, mask in masking.mask_dict.items()}
    return erdos_renyi_densities(shapes, masking.density, is_kernel)


def erdos_renyi_counts(shapes: dict[str, torch.Size], density: float, is_kernel: bool) -> dict[str, int]:
    """Whole ER/ERK counts per layer, summing exactly to round(density * total).

    :param shapes: weight name -> shape
    :param density: overall density
    :param is_kernel: ERK (True) or ER (False)
    :return: weight name -> active weights
    """
    densities = erdos_renyi_densities(shapes, density, is_kernel)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    budget = round(density * sum(sizes.values()))
    names = list(sizes)
    shares = apportion(budget, [densities[n] * sizes[n] for n in names], [sizes[n] for n in names])
    return dict(zip(names, shares, strict=False))


def uniform_counts(sizes: dict[str, int], density: float, first_is_conv: bool) -> dict[str, int]:
    """Whole uniform counts per layer, summing exactly to round(density * total).

    As in RigL, a first layer that is a convolution stays dense (it is small and costly to sparsify); the
    other layers then share what remains of the budget.

    :param sizes: weight name -> number of weights, in the model's order
    :param density: overall density
    :param first_is_conv: whether the first layer is a convolution
    :return: weight name -> active weights
    """
    names = list(sizes)
    budget = round(density * sum(sizes.values()))
    first = names[0]
    counts: dict[str, int] = {}
    if density < 1.0 and len(names) > 1 and first_is_conv and sizes[first] < budget:
        counts[first] = sizes[first]
        budget -= sizes[first]
        names = names[1:]
    shares = apportion(budget, [float(sizes[n]) for n in names], [sizes[n] for n in names])
    counts.update(zip(names, shares, strict=False))
    return counts


def _fill_random(masking: Masking, counts: dict[str, int], stream: int = INIT_STREAM) -> None:
    for name, count in counts.items():
        mask = masking.mask_dict[name]
        everywhere = torch.ones(mask.shape, dtype=torch.bool)
        chosen = sample_indices(everywhere, count, masking.generator(name, stream))
        fresh = torch.zeros(mask.numel(), dtype=torch.bool)
        fresh[chosen] = True
        masking.mask_dict[name] = fresh.view(mask.shape).to(mask.device)


# The inits whose per-layer counts follow from `density` alone, and how they count.
DENSITY_COUNTS: dict[str, Callable[[dict[str, torch.Size], float, bool], dict[str, int]]] = {
    "random": lambda shapes, density, first_is_conv: uniform_counts(
        {name: math.prod(shape) for name, shape in shapes.items()}, density, first_is_conv
    ),
    "erdos-renyi": lambda shapes, density, first_is_conv: erdos_renyi_counts(shapes, density, False),
    "erdos-renyi-kernel": lambda shapes, density, first_is_conv: erdos_renyi_counts(shapes, density, True),
}


def counts_with_overrides(
    masking: Masking, counts: Callable[[dict[str, torch.Size], float, bool], dict[str, int]]
) -> dict[str, int]:
    """Whole active counts per layer: `round(d * size)` for a layer with a per-tensor density `d`
    (`masking.density_overrides`), and the scheme's `counts` for the others, solved for what remains of the
    budget, so the network still holds exactly `round(density * masked weights)` active weights.

    :param masking: Masking instance (its `density`, `density_overrides` and `mask_dict` are used)
    :param counts: the scheme: (shapes, density, first layer is a convolution) -> counts
    """
    shapes = {name: mask.shape for name, mask in masking.mask_dict.items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    overrides = {name: d for name, d in masking.density_overrides.items() if name in shapes}
    if not overrides:
        return counts(shapes, masking.density, masking.is_conv(next(iter(shapes))))
    fixed = {name: round(density * sizes[name]) for name, density in overrides.items()}
    rest = {name: shape for name, shape in shapes.items() if name not in fixed}
    budget = round(masking.density * sum(sizes.values()))
    remaining, room = budget - sum(fixed.values()), sum(sizes[name] for name in rest)
    if not 0 <= remaining <= room or (not rest and remaining):
        reach = (sum(fixed.values()), sum(fixed.values()) + room)
        raise SparseLearningError(
            f"density_overrides fix {sum(fixed.values()):,} active weights in {len(fixed)} tensor(s), so the overall "
            f"density can only be between {reach[0] / sum(sizes.values()):.6g} and "
            f"{reach[1] / sum(sizes.values()):.6g}, not {masking.density}"
        )
    if not rest:
        return fixed
    solved = counts(rest, remaining / room, masking.is_conv(next(iter(rest))))
    return {name: fixed[name] if name in fixed else solved[name] for name in shapes}


def random_init(masking: Masking, **kwargs: Any) -> None:
    """Uniform density: every layer holds the same fraction of its weights.

    As in RigL, a first layer that is a convolution stays dense (it is small and costly to sparsify); the
    other layers then share what remains of the budget, so the overall density is still exact. Layers with a
    per-tensor density (`density_overrides`) keep it, and the others share what remains.

    :param masking: Masking instance (its `density`, `mask_dict` and generators are used)
    """
    _fill_random(masking, counts_with_overrides(masking, DENSITY_COUNTS["random"]))


def erdos_renyi_init(masking: Masking, is_kernel: bool = True, **kwargs: Any) -> None:
    """ER (`is_kernel=False`) or ERK (`is_kernel=True`) layer densities, exact in total.

    A weight of any shape with two or more dimensions takes part: ER counts its first two dimensions (outputs,
    inputs), ERK all of them. A stacked projection (an attention layer's `in_proj_weight`, 3E x E, or a recurrent
    layer's four gates, 4H x input) counts as one matrix of that shape. Layers with a per-tensor density
    (`density_overrides`) keep it, and the others share what remains by ER/ERK.

    :param masking: Masking instance
    :param is_kernel: use ERK (True), ER (False)
    """
    _fill_random(
        masking, counts_with_overrides(masking, DENSITY_COUNTS["erdos-renyi-kernel" if is_kernel else "erdos-renyi"])
    )


def smallest_density(sparse_init: str, shapes: dict[str, torch.Size], first_is_conv: bool = False) -> float:
    """The smallest density at which `sparse_init` gives every layer at least one active weight.

    Searched over whole budgets (the counts depend on round(density * total) and on the density itself); of the
    densities that round to the smallest working budget, the one with the fewest digits is returned.

    :param sparse_init: `random`, `erdos-renyi` or `erdos-renyi-kernel`
    :param shapes: weight name -> shape of every masked layer, in the model's order
    :param first_is_conv: whether the first layer is a convolution (uniform keeps it dense)
    :return: a density in (0, 1]
    """
    count = DENSITY_COUNTS[sparse_init]
    total = sum(math.prod(shape) for shape in shapes.values())

    def works(density: float) -> bool:
        return min(count(shapes, density, first_is_conv).values()) >= 1

    lowest_failing, highest_working = 0, total  # budgets; every layer is full at the whole budget
    while highest_working - lowest_failing > 1:
        middle = (lowest_failing + highest_working) // 2
        if works(middle / total):
            highest_working = middle
        else:
            lowest_failing = middle
    # Densities in [(budget - 0.5) / total, budget / total] round to the budget: name the shortest one there.
    lowest, highest = (highest_working - 0.5) / total, highest_working / total
    for digits in range(1, 17):
        scale = 10.0 ** (digits - 1 - math.floor(math.log10(lowest)))
        short = math.ceil(lowest * scale) / scale
        if short <= highest and works(short):
            return short
    return highest


def require_a_weight_per_layer(masking: Masking) -> None:
    """Refuse initial masks that leave a layer without an active weight (its outputs would be constant, and a
    run at such a density trains to chance accuracy), naming the smallest density that avoids it.

    :param masking: a Masking whose `mask_dict` a density-driven init (uniform, ER, ERK) has just filled
    """
    empty = [name for name, mask in masking.mask_dict.items() if mask.numel() and not bool(mask.any())]
    if not empty:
        return
    shapes = {name: mask.shape for name, mask in masking.mask_dict.items()}
    lowest = smallest_density(masking.sparse_init, shapes, masking.is_conv(next(iter(shapes))))
    others = f" and {len(empty) - 1} more layers" if len(empty) > 1 else ""
    raise SparseLearningError(
        f"density {masking.density} leaves layer {empty[0]!r} ({math.prod(shapes[empty[0]]):,} weights){others} "
        f"without an active weight under sparse_init {masking.sparse_init!r}; the smallest density that gives "
        f"every masked layer at least one weight is {lowest}"
    )


def _read_mask_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SparseLearningError(f"lottery mask file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or hostile file ends up here
        raise SparseLearningError(f"cannot read lottery mask file {path}: {first_line(error)}") from None
    if isinstance(state, dict) and isinstance(state.get("masking"), dict):
        state = state["masking"]
    if isinstance(state, dict) and PACKED_KEY in state:  # a finished run's final_masks.pt, one bit per weight
        return unpack_masks(state, f"lottery mask file {path}")
    masks = state.get("masks", state.get("mask_dict")) if isinstance(state, dict) else None
    if not isinstance(masks, dict):
        raise SparseLearningError(
            f"{path} holds no masks: expected torch.save(masking.state_dict()) or a training checkpoint"
        )
    return masks


def as_boolean_mask(value: torch.Tensor, what: str) -> torch.Tensor:
    """A mask read from a file as bool, refusing anything but 0/1 or True/False values.

    Converting 0.3 or NaN to bool gives True, so a hostile or broken file would silently turn into a dense run.

    :param value: the tensor read from the file
    :param what: names the mask in the error, e.g. "lottery mask for 'fc.weight' in masks.pt"
    :return: the mask as a bool tensor on the CPU
    """
    if value.layout != torch.strided:
        raise SparseLearningError(f"{what} is stored as a {value.layout} tensor; masks must be dense tensors")
    if value.dtype == torch.bool:
        return value.cpu()
    if value.is_complex() or not (value.is_floating_point() or value.dtype in _INTEGER_DTYPES):
        raise SparseLearningError(f"{what} has dtype {value.dtype}; masks must hold only 0/1 or True/False")
    binary = (value == 0) | (value == 1)
    if not bool(binary.all()):
        odd = value[~binary]
        raise SparseLearningError(
            f"{what} holds {odd.numel():,} values that are neither 0 nor 1 (e.g. {odd.reshape(-1)[0].item():g}); "
            "masks must hold only 0/1 or True/False"
        )
    return (value != 0).cpu()


def _refuse_empty_masks(masks: dict[str, torch.Tensor], what: str) -> None:
    """Refuse masks without any active weight (an empty run); warn, naming them, about empty layers.

    A single empty layer is legitimate: global magnitude pruning can remove all of a layer (a residual branch
    of a ResNet, say), and a lottery restart from such a run must keep it so.
    """
    empty = [name for name, mask in masks.items() if mask.numel() and not bool(mask.any())]
    if empty and len(empty) == len(masks):
        raise SparseLearningError(f"{what}: no layer has an active weight, so the run would train an empty network")
    if empty:
        listed = ", ".join(repr(name) for name in empty)
        warn_user(f"{what}: {len(empty)} layer(s) without an active weight: {listed}")


def lottery_ticket_init(masking: Masking, lottery_mask_path: str | Path | None = None, shuffle: bool = False) -> None:
    """Masks of a finished run, on this run's freshly initialised weights.

    Shuffle: use layer wise densities, but not exact mask (`lottery-ticket-dist`).

    :param masking: Masking instance
    :param lottery_mask_path: a file written by `torch.save(masking.state_dict(), path)` or a checkpoint
    :param shuffle: keep only each layer's active count, at random positions
    """
    if lottery_mask_path is None:
        raise SparseLearningError("sparse_init 'lottery-ticket' needs lottery_mask_path (a saved mask or checkpoint)")
    path = Path(lottery_mask_path)
    saved = _read_mask_file(path)
    expected, found = set(masking.mask_dict), set(saved)
    if expected != found:
        missing = sorted(expected - found)
        extra = sorted(found - expected)
        raise SparseLearningError(
            f"lottery masks in {path} do not match the model: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    masks = {}
    for name, mask in masking.mask_dict.items():
        loaded = saved[name]
        if not isinstance(loaded, torch.Tensor) or loaded.shape != mask.shape:
            got = tuple(loaded.shape) if isinstance(loaded, torch.Tensor) else type(loaded).__name__
            raise SparseLearningError(
                f"lottery mask for {name!r} in {path} has shape {got}, the model's weight has {tuple(mask.shape)}"
            )
        masks[name] = as_boolean_mask(loaded, f"lottery mask for {name!r} in {path}")
    _refuse_empty_masks(masks, f"lottery masks in {path}")
    for name, mask in masks.items():
        masking.mask_dict[name] = mask.to(masking.mask_dict[name].device)
    if shuffle:
        counts = {name: int(torch.count_nonzero(m)) for name, m in masking.mask_dict.items()}
        _fill_random(masking, counts, SHUFFLE_STREAM)


def resume_init(masking: Masking, **kwargs: Any) -> None:
    """Masks from the weights that are currently non-zero (a sparse model saved without its masks).

    Weights that are NaN or infinite are refused, naming the layer, and so are weights that are all zero;
    a single all-zero layer is warned about.

    :param masking: Masking instance
    """
    masks = {}
    for name in masking.mask_dict:
        weight = masking.params[name].detach()
        if not bool(torch.isfinite(weight).all()):
            raise SparseLearningError(f"weights of {name!r} hold NaN or infinite values; resume needs finite weights")
        masks[name] = weight != 0
    _refuse_empty_masks(masks, "sparse_init 'resume' (masks from the nonzero weights)")
    masking.mask_dict.update(masks)


def _remove_linear_layers(masking: Masking) -> float:
    """Channel-wise schemes keep Linear layers dense; returns the density left for the convolutions."""
    sizes = {name: mask.numel() for name, mask in masking.mask_dict.items()}
    linear = [name for name in sizes if isinstance(masking.layer_module(name), nn.Linear)]
    n_fc = sum(sizes[name] for name in linear)
    n_conv = sum(sizes.values()) - n_fc
    if n_conv == 0:
        raise SparseLearningError("channel-wise sparse_init needs convolution layers; the model has only Linear ones")
    density = (masking.density * (n_conv + n_fc) - n_fc) / n_conv
    if density <= 0:
        raise SparseLearningError(
            f"density {masking.density} is too low for channel-wise sparsity: the dense Linear layers alone "
            f"hold {n_fc / (n_conv + n_fc):.4f} of the weights"
        )
    for name in linear:
        masking.remove_weight(name)
    return min(1.0, density)


def _fill_kernels(masking: Masking, densities: dict[str, float]) -> None:
    for name, layer_density in densities.items():
        mask = masking.mask_dict[name]
        kernels = kernel_view(mask).shape[0]
        count = min(kernels, round(layer_density * kernels))
        chosen = sample_indices(torch.ones(kernels, dtype=torch.bool), count, masking.generator(name, INIT_STREAM))
        active = torch.zeros(kernels, dtype=torch.bool)
        active[chosen] = True
        masking.mask_dict[name] = expand_kernel_mask(active, mask.cpu()).to(mask.device)


def struct_random_init(masking: Masking, **kwargs: Any) -> None:
    """Channel-wise uniform: whole kernels of every convolution at one density; Linear layers dense.

    :param masking: Masking instance
    """
    density = _remove_linear_layers(masking)
    _fill_kernels(masking, dict.fromkeys(masking.mask_dict, density))


def struct_erdos_renyi_init(masking: Masking, is_kernel: bool = True, **kwargs: Any) -> None:
    """Channel-wise ER/ERK: whole kernels, layer densities by ER/ERK over the convolutions.

    :param masking: Masking instance
    :param is_kernel: use ERK (True), ER (False)
    """
    density = _remove_linear_layers(masking)
    shapes = {name: mask.shape for name, mask in masking.mask_dict.items()}
    _fill_kernels(masking, erdos_renyi_densities(shapes, density, is_kernel))


def constant_fan_in_counts(counts: dict[str, int], shapes: dict[str, torch.Size]) -> dict[str, int]:
    """Per-layer fan-ins k (active inputs of every neuron) whose layers hold as close to `counts` as whole
    neurons allow: each layer starts at `counts // neurons` (at least 1, at most the dense fan-in), then, while
    the network's total stays within `sum(counts)`, the layer furthest below its count (ties: the model's order)
    takes one more input per neuron. The total ends at most `sum(counts)` (unless one input per neuron
    already needs more), short of it by less than the neuron count of every layer that is not dense yet.

    :param counts: weight name -> active weights wanted (exact in total)
    :param shapes: weight name -> shape (outputs first)
    :return: weight name -> fan-in k
    """
    neurons = {name: shape[0] for name, shape in shapes.items()}
    dense = {name: math.prod(shape[1:]) for name, shape in shapes.items()}
    fan = {name: max(1, min(dense[name], counts[name] // neurons[name])) for name in shapes}
    room = sum(counts.values()) - sum(fan[name] * neurons[name] for name in shapes)
    while True:
        open_layers = [name for name in shapes if fan[name] < dense[name] and neurons[name] <= room]
        if not open_layers:
            return fan
        name = max(open_layers, key=lambda name: counts[name] - fan[name] * neurons[name])  # first on ties
        fan[name] += 1
        room -= neurons[name]


def fan_in_init(masking: Masking, scheme: str = "erdos-renyi-kernel", **kwargs: Any) -> None:
    """Constant fan-in masks (SRigL): every neuron (a row of a Linear weight, an output channel of a
    convolution) of a layer holds the same number k of active inputs, drawn uniformly at random per neuron.

    The layer budgets come from `scheme` (`erdos-renyi-kernel`, SRigL's default as in RigL, or `random` for
    uniform), per-tensor densities included, and are then rounded to whole neurons
    (`constant_fan_in_counts`), at least one input per neuron: the network holds at most
    `round(density * masked weights)` active weights, short of it by less than a layer's neuron count. SRigL's
    updates then keep every layer's count exactly.

    :param masking: Masking instance
    :param scheme: a key of `DENSITY_COUNTS`
    """
    shapes = {name: mask.shape for name, mask in masking.mask_dict.items()}
    for name, shape in shapes.items():
        if len(shape) < 2:
            raise SparseLearningError(f"constant fan-in needs weights of 2 or more dims; {name!r} has {tuple(shape)}")
    fan = constant_fan_in_counts(counts_with_overrides(masking, DENSITY_COUNTS[scheme]), shapes)
    for name, shape in shapes.items():
        neurons, dense = shape[0], math.prod(shape[1:])
        scores = torch.rand((neurons, dense), generator=masking.generator(name, INIT_STREAM))
        ranks = torch.empty((neurons, dense), dtype=torch.long)
        order = torch.sort(scores, dim=1, stable=True).indices
        ranks.scatter_(1, order, torch.arange(dense).expand(neurons, dense))
        device = masking.mask_dict[name].device
        masking.mask_dict[name] = (ranks < fan[name]).view(shape).to(device)


registry: dict[str, Callable[..., None]] = {
    "random": random_init,
    "erdos-renyi": partial(erdos_renyi_init, is_kernel=False),
    "erdos-renyi-kernel": partial(erdos_renyi_init, is_kernel=True),
    "lottery-ticket": lottery_ticket_init,
    "lottery-ticket-dist": partial(lottery_ticket_init, shuffle=True),
    "resume": resume_init,
    "struct-random": struct_random_init,
    "struct-erdos-renyi": partial(struct_erdos_renyi_init, is_kernel=False),
    "struct-erdos-renyi-kernel": partial(struct_erdos_renyi_init, is_kernel=True),
    "fan-in-random": partial(fan_in_init, scheme="random"),
    "fan-in-erdos-renyi-kernel": partial(fan_in_init, scheme="erdos-renyi-kernel"),
}
