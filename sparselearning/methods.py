"""Every method in one call, with its paper's defaults: returns a ready `Masking` for your model and optimizer.

    masking = sparselearning.methods.rigl(model, optimizer, density=0.1, total_steps=len(loader) * epochs)
    ...
    loss.backward()
    masking.step()          # instead of optimizer.step()

Every function also takes `exclude=[...]` (layer names, partial names or module types kept dense) and any
other `Masking` keyword. Unlike a bare `Masking`, the builders refuse a density at which some masked layer
would get no active weight (`allow_empty_layers=False`), and the ones that know `total_steps` pass it on, so
stepping past the planned end warns. Dynamic methods update masks every `update_frequency` steps until `end_fraction` of
training (RigL: 100 and 75%) with the drop fraction annealed by a cosine from `drop_fraction` (RigL: 0.3,
SNFS: 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError, check_choice, check_density, check_fraction, check_positive_int
from sparselearning.funcs.decay import CosineDecay, Decay, MagnitudePruneDecay

Optimizer = torch.optim.Optimizer


def _build(
    model: nn.Module,
    optimizer: Optimizer,
    prune_rate_decay: Decay | None,
    lottery_mask_path: str | Path | None = None,
    **masking_options: Any,
) -> Masking:
    """A Masking with the builders' defaults, over `model` (minus `exclude`)."""
    exclude = masking_options.pop("exclude", ())
    masking_options.setdefault("allow_empty_layers", False)
    masking = Masking(optimizer, prune_rate_decay, **masking_options)
    masking.add_module(model, lottery_mask_path=lottery_mask_path, exclude=exclude)
    return masking


def _end_step(total_steps: int, end_fraction: float) -> int:
    check_positive_int(total_steps, "total_steps")
    check_fraction(end_fraction, "end_fraction")
    end = int(end_fraction * total_steps)
    if end < 1:
        raise SparseLearningError(f"end_fraction {end_fraction} of {total_steps} steps leaves no step for mask updates")
    return end


def _dynamic(
    model: nn.Module,
    optimizer: Optimizer,
    density: float,
    total_steps: int,
    *,
    drop_fraction: float,
    update_frequency: int,
    end_fraction: float,
    **masking_options: Any,
) -> Masking:
    end_when = _end_step(total_steps, end_fraction)
    return _build(
        model,
        optimizer,
        CosineDecay(check_fraction(drop_fraction, "drop_fraction"), T_max=end_when),
        density=density,
        update_frequency=check_positive_int(update_frequency, "update_frequency"),
        end_when=end_when,
        total_steps=total_steps,
        **masking_options,
    )


def dense(model: nn.Module, optimizer: Optimizer, **masking_options: Any) -> Masking:
    """Dense training through the same interface (`step()` is `optimizer.step()`)."""
    return _build(model, optimizer, None, density=1.0, **masking_options)


def small_dense_width(width: int, density: float) -> int:
    """Small-Dense: every layer width times sqrt(density), at least 1."""
    return max(1, round(width * math.sqrt(check_density(density))))


def small_dense(model: nn.Module, optimizer: Optimizer, **masking_options: Any) -> Masking:
    """Small-Dense: a dense model whose widths were scaled with `small_dense_width` (the models' `density`)."""
    return dense(model, optimizer, **masking_options)


def static(
    model: nn.Module, optimizer: Optimizer, density: float = 0.1, sparse_init: str = "random", **masking_options: Any
) -> Masking:
    """Static sparse: the initial mask never changes."""
    return _build(model, optimizer, None, density=density, sparse_init=sparse_init, **masking_options)


def set_(
    model: nn.Module,
    optimizer: Optimizer,
    density: float = 0.1,
    total_steps: int = 1000,
    *,
    drop_fraction: float = 0.3,
    update_frequency: int = 100,
    end_fraction: float = 0.75,
    sparse_init: str = "random",
    **masking_options: Any,
) -> Masking:
    """SET (Mocanu et al. 2018): drop smallest |w|, regrow as many at uniformly random inactive positions."""
    return _dynamic(
        model,
        optimizer,
        density,
        total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        prune_mode="magnitude",
        growth_mode="random",
        redistribution_mode="none",
        **masking_options,
    )


def snfs(
    model: nn.Module,
    optimizer: Optimizer,
    density: float = 0.1,
    total_steps: int = 1000,
    *,
    drop_fraction: float = 0.5,
    update_frequency: int = 100,
    end_fraction: float = 0.75,
    sparse_init: str = "random",
    **masking_options: Any,
) -> Masking:
    """SNFS / sparse momentum (Dettmers & Zettlemoyer 2019): drop smallest |w|; the freed budget goes to layers
    by mean |momentum|; growth at the largest |momentum|; dense momentum. The paper updates once per epoch:
    pass `update_frequency=steps_per_epoch` to match it.
    """
    return _dynamic(
        model,
        optimizer,
        density,
        total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        prune_mode="magnitude",
        growth_mode="momentum",
        redistribution_mode="momentum",
        dense_gradients=True,
        **masking_options,
    )


def rigl(
    model: nn.Module,
    optimizer: Optimizer,
    density: float = 0.1,
    total_steps: int = 1000,
    *,
    drop_fraction: float = 0.3,
    update_frequency: int = 100,
    end_fraction: float = 0.75,
    sparse_init: str = "random",
    redistribution_mode: str = "none",
    **masking_options: Any,
) -> Masking:
    """RigL (Evci et al. 2020): drop smallest |w|, grow the same number at the largest |gradient|.

    `redistribution_mode="momentum"` or `"grad"` gives the seed project's RigL with redistribution;
    `sparse_init="erdos-renyi-kernel"` gives RigL (ERK).
    """
    return _dynamic(
        model,
        optimizer,
        density,
        total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        prune_mode="magnitude",
        growth_mode="absolute-gradient",
        redistribution_mode=redistribution_mode,
        **masking_options,
    )


def struct_rigl(
    model: nn.Module,
    optimizer: Optimizer,
    density: float = 0.1,
    total_steps: int = 1000,
    *,
    drop_fraction: float = 0.3,
    update_frequency: int = 100,
    end_fraction: float = 0.75,
    sparse_init: str = "struct-erdos-renyi-kernel",
    criterion: str = "mean",
    **masking_options: Any,
) -> Masking:
    """Channel-wise RigL: whole kernels are dropped by mean (or max) |w| and grown by mean (or min) |grad|."""
    check_choice("criterion", criterion, ["mean", "max"])
    growth = "struct-absolute-gradient-mean" if criterion == "mean" else "struct-absolute-gradient-min"
    return _dynamic(
        model,
        optimizer,
        density,
        total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        prune_mode=f"struct-magnitude-{criterion}",
        growth_mode=growth,
        redistribution_mode="none",
        **masking_options,
    )


def pruning(
    model: nn.Module,
    optimizer: Optimizer,
    density: float = 0.1,
    total_steps: int = 1000,
    *,
    start_fraction: float = 0.0,
    end_fraction: float = 0.75,
    interval: int = 100,
    **masking_options: Any,
) -> Masking:
    """Gradual magnitude pruning (Zhu & Gupta 2018): from dense to `density` along the cubic schedule, one
    global magnitude threshold every `interval` steps between `start_fraction` and `end_fraction` of training.
    """
    density = check_density(density)
    end_when = _end_step(total_steps, end_fraction)
    start_when = int(check_fraction(start_fraction, "start_fraction") * total_steps)
    if start_when >= end_when:
        raise SparseLearningError(f"start_fraction {start_fraction} must be below end_fraction {end_fraction}")
    end_when = min(end_when, total_steps - 1)  # the last step that can prune: steps are 0 .. total_steps - 1
    decay = MagnitudePruneDecay(
        initial_sparsity=0.0, final_sparsity=1.0 - density, T_max=end_when, T_start=start_when, interval=interval
    )
    return _build(
        model,
        optimizer,
        decay,
        density=1.0,
        prune_mode="global-magnitude",
        growth_mode="none",
        redistribution_mode="none",
        update_frequency=check_positive_int(interval, "interval"),
        start_when=start_when,
        end_when=end_when + 1,
        total_steps=total_steps,
        **masking_options,
    )


def lottery(
    model: nn.Module,
    optimizer: Optimizer,
    lottery_mask_path: str | Path,
    *,
    shuffle: bool = False,
    **masking_options: Any,
) -> Masking:
    """Lottery ticket restart: a finished run's masks (file or checkpoint) on freshly initialised weights.

    `shuffle=True` keeps only each layer's density (`lottery-ticket-dist`).
    """
    masking = _build(
        model,
        optimizer,
        None,
        lottery_mask_path,
        density=1.0,
        sparse_init="lottery-ticket-dist" if shuffle else "lottery-ticket",
        **masking_options,
    )
    masking.density = masking.stats.total_density
    return masking


registry: dict[str, Callable[..., Masking]] = {
    "Dense": dense,
    "Small_Dense": small_dense,
    "Static": static,
    "SET": set_,
    "SNFS": snfs,
    "RigL": rigl,
    "Struct_RigL": struct_rigl,
    "Pruning": pruning,
    "Lottery": lottery,
}
