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

from sparselearning.errors import SparseLearningError
from sparselearning.funcs._layers import expand_kernel_mask, kernel_view
from sparselearning.ops.select import apportion, sample_indices

if TYPE_CHECKING:
    from collections.abc import Callable

    from sparselearning.core import Masking

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


def _counts_for_densities(masking: Masking, densities: dict[str, float]) -> dict[str, int]:
    """Whole counts per layer following `densities`, summing exactly to round(density * total)."""
    sizes = {name: mask.numel() for name, mask in masking.mask_dict.items()}
    budget = round(masking.density * sum(sizes.values()))
    names = list(sizes)
    shares = apportion(budget, [densities[n] * sizes[n] for n in names], [sizes[n] for n in names])
    return dict(zip(names, shares, strict=False))


def _fill_random(masking: Masking, counts: dict[str, int], stream: int = INIT_STREAM) -> None:
    for name, count in counts.items():
        mask = masking.mask_dict[name]
        everywhere = torch.ones(mask.shape, dtype=torch.bool)
        chosen = sample_indices(everywhere, count, masking.generator(name, stream))
        fresh = torch.zeros(mask.numel(), dtype=torch.bool)
        fresh[chosen] = True
        masking.mask_dict[name] = fresh.view(mask.shape).to(mask.device)


def random_init(masking: Masking, **kwargs: Any) -> None:
    """Uniform density: every layer holds the same fraction of its weights.

    As in RigL, a first layer that is a convolution stays dense (it is small and costly to sparsify); the
    other layers then share what remains of the budget, so the overall density is still exact.

    :param masking: Masking instance (its `density`, `mask_dict` and generators are used)
    """
    sizes = {name: mask.numel() for name, mask in masking.mask_dict.items()}
    names = list(sizes)
    budget = round(masking.density * sum(sizes.values()))
    first = names[0]
    counts: dict[str, int] = {}
    if masking.density < 1.0 and len(names) > 1 and masking.is_conv(first) and sizes[first] < budget:
        counts[first] = sizes[first]
        budget -= sizes[first]
        names = names[1:]
    shares = apportion(budget, [float(sizes[n]) for n in names], [sizes[n] for n in names])
    counts.update(zip(names, shares, strict=False))
    _fill_random(masking, counts)


def erdos_renyi_init(masking: Masking, is_kernel: bool = True, **kwargs: Any) -> None:
    """ER (`is_kernel=False`) or ERK (`is_kernel=True`) layer densities, exact in total.

    :param masking: Masking instance
    :param is_kernel: use ERK (True), ER (False)
    """
    _fill_random(masking, _counts_for_densities(masking, get_erdos_renyi_dist(masking, is_kernel)))


def _read_mask_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SparseLearningError(f"lottery mask file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or hostile file ends up here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SparseLearningError(f"cannot read lottery mask file {path}: {reason}") from None
    if isinstance(state, dict) and isinstance(state.get("masking"), dict):
        state = state["masking"]
    masks = state.get("masks", state.get("mask_dict")) if isinstance(state, dict) else None
    if not isinstance(masks, dict):
        raise SparseLearningError(
            f"{path} holds no masks: expected torch.save(masking.state_dict()) or a training checkpoint"
        )
    return masks


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
    for name, mask in masking.mask_dict.items():
        loaded = saved[name]
        if not isinstance(loaded, torch.Tensor) or loaded.shape != mask.shape:
            got = tuple(loaded.shape) if isinstance(loaded, torch.Tensor) else type(loaded).__name__
            raise SparseLearningError(
                f"lottery mask for {name!r} in {path} has shape {got}, the model's weight has {tuple(mask.shape)}"
            )
        masking.mask_dict[name] = loaded.to(device=mask.device, dtype=torch.bool)
    if shuffle:
        counts = {name: int(torch.count_nonzero(m)) for name, m in masking.mask_dict.items()}
        _fill_random(masking, counts, SHUFFLE_STREAM)


def resume_init(masking: Masking, **kwargs: Any) -> None:
    """Masks from the weights that are currently non-zero (a sparse model saved without its masks).

    :param masking: Masking instance
    """
    for name in masking.mask_dict:
        masking.mask_dict[name] = masking.params[name].detach() != 0


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
}
