"""Every method in one call, with its paper's defaults: returns a ready `Masking` for your model and optimizer.

    masking = sparselearning.methods.rigl(model, optimizer, density=0.1, total_steps=len(loader) * epochs)
    ...
    loss.backward()
    masking.step()          # instead of optimizer.step()

Every function also takes `exclude=[...]` and `include=[...]` (weights kept dense, or masked beyond the default
Linear, Conv, attention and recurrent weights: glob patterns, names, partial names or module classes),
`density_overrides={entry: density}` (per-tensor densities, the rest solved so the total stays exact) and any
other `Masking` keyword. Unlike a bare `Masking`, the builders refuse a density at which some masked layer
would get no active weight (`allow_empty_layers=False`), and the ones that know `total_steps` pass it on, so
stepping past the planned end warns. Dynamic methods update masks every `update_frequency` steps until `end_fraction` of
training (RigL: 100 and 75%) with the drop fraction annealed by a cosine from `drop_fraction` (RigL: 0.3,
SNFS: 0.5).

Each method is an entry of `sparselearning.method_table`, which the command line reads too: the functions
below build their entry under the paper's name, and `build(name, model, optimizer, ...)` builds any entry by
name, methods you registered yourself included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparselearning import method_table
from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError, check_choice, check_density, check_fraction, check_positive_int
from sparselearning.funcs.decay import Decay
from sparselearning.method_table import DENSE, DYNAMIC, NM, PRUNING, STATIC, Method

# Re-exported: Python users narrow their own models with it (the registry models narrow themselves).
from sparselearning.models.widths import small_dense_width as small_dense_width
from sparselearning.sr_ste import NMMasking
from sparselearning.sync import MaskAgreement

Optimizer = torch.optim.Optimizer

TOTAL_STEPS = 1000  # the builders' run length when the caller gives none


def assemble(
    method: Method,
    model: nn.Module,
    optimizer: Optimizer,
    decay: Decay | None,
    lottery_mask_path: str | Path | None = None,
    **masking_options: Any,
) -> Masking:
    """A Masking over `model` (minus `exclude`) with `method`'s rules, unless `masking_options` choose others.

    Shared by `build` and the command line (`sparselearning.train.build`), which differ only in where the
    settings and the schedule come from. Layers left without an active weight are refused by default.
    """
    exclude = masking_options.pop("exclude", ())
    include = masking_options.pop("include", ())
    overrides = masking_options.pop("density_overrides", None)
    verify_sync = bool(masking_options.pop("verify_sync", False))
    settings: dict[str, Any] = {
        "prune_mode": method.prune_mode,
        "growth_mode": method.growth_mode,
        "redistribution_mode": method.redistribution_mode,
        "dense_gradients": method.dense_gradients,
        "allow_empty_layers": False,
        **masking_options,
    }
    masking = Masking(optimizer, decay, observers=[MaskAgreement()] if verify_sync else [], **settings)
    masking.add_module(
        model, lottery_mask_path=lottery_mask_path, exclude=exclude, include=include, density_overrides=overrides
    )
    return masking


def make_decay(
    method: Method,
    decay_schedule: str,
    *,
    drop_fraction: float | None,
    density: float,
    start_when: int,
    last_step: int,
    interval: int,
    key: str = "decay_schedule",
) -> Decay:
    """The schedule `decay_schedule` (a key of `sparselearning.funcs.decay.registry`) for `method`.

    A drop-fraction schedule (dynamic methods) is made as `cls(drop_fraction, T_max=last_step)`; a
    target-sparsity schedule (pruning) as `cls(initial_sparsity=0.0, final_sparsity=1 - density,
    T_max=last_step, T_start=start_when, interval=interval)`. A schedule that does not fit the method is
    refused in one line.
    """
    # Registered schedules follow one of the two constructor conventions above, not Decay's own (no) arguments.
    decay_class: Callable[..., Decay] = method_table.decay_class(method, decay_schedule, key)
    if method.kind == DYNAMIC:
        return decay_class(drop_fraction, T_max=last_step)
    return decay_class(
        initial_sparsity=0.0, final_sparsity=1.0 - density, T_max=last_step, T_start=start_when, interval=interval
    )


def _end_step(total_steps: int, end_fraction: float) -> int:
    check_positive_int(total_steps, "total_steps")
    check_fraction(end_fraction, "end_fraction")
    end = int(end_fraction * total_steps)
    if end < 1:
        raise SparseLearningError(f"end_fraction {end_fraction} of {total_steps} steps leaves no step for mask updates")
    return end


def _initial_masks(method: Method, options: dict[str, Any]) -> tuple[str, str | Path | None, float | None]:
    """sparse_init, lottery_mask_path and density, taken out of `options` (masks from a saved run: density 1
    until the saved masks are loaded)."""
    if not method.from_saved_masks:
        density = options.pop("density", method.python.density)
        return options.pop("sparse_init", method.python.sparse_init), None, density
    path = options.pop("lottery_mask_path", None)
    if path is None:
        raise SparseLearningError(
            f"{method.name} starts from a finished run's masks: pass lottery_mask_path (a mask file or checkpoint)"
        )
    return method_table.saved_masks_init(bool(options.pop("shuffle", False))), path, 1.0


def _build_dense(method: Method, model: nn.Module, optimizer: Optimizer, options: dict[str, Any]) -> Masking:
    if "density" in options:
        raise SparseLearningError(
            f"{method.name} trains every weight: leave density out (Small-Dense narrows the model instead, "
            "with small_dense_width)"
        )
    return assemble(method, model, optimizer, None, density=1.0, **options)


def _build_static(method: Method, model: nn.Module, optimizer: Optimizer, options: dict[str, Any]) -> Masking:
    sparse_init, path, density = _initial_masks(method, options)
    return assemble(method, model, optimizer, None, path, density=density, sparse_init=sparse_init, **options)


def _build_dynamic(method: Method, model: nn.Module, optimizer: Optimizer, options: dict[str, Any]) -> Masking:
    sparse_init, path, density = _initial_masks(method, options)
    total_steps = options.pop("total_steps", TOTAL_STEPS)
    end_when = _end_step(total_steps, options.pop("end_fraction", method.end_fraction))
    update_frequency = options.pop("update_frequency", method.python.interval)
    decay = make_decay(
        method,
        options.pop("decay_schedule", method.decay_schedule),
        drop_fraction=check_fraction(options.pop("drop_fraction", method.drop_fraction), "drop_fraction"),
        density=1.0,
        start_when=0,
        last_step=end_when,
        interval=update_frequency,
    )
    return assemble(
        method,
        model,
        optimizer,
        decay,
        path,
        density=density,
        sparse_init=sparse_init,
        update_frequency=check_positive_int(update_frequency, "update_frequency"),
        end_when=end_when,
        total_steps=total_steps,
        **options,
    )


def _build_pruning(method: Method, model: nn.Module, optimizer: Optimizer, options: dict[str, Any]) -> Masking:
    density = check_density(options.pop("density", method.python.density))
    total_steps = options.pop("total_steps", TOTAL_STEPS)
    start_fraction = options.pop("start_fraction", method.python.start_fraction)
    end_fraction = options.pop("end_fraction", method.end_fraction)
    interval = options.pop("interval", method.python.interval)
    end_when = _end_step(total_steps, end_fraction)
    start_when = int(check_fraction(start_fraction, "start_fraction") * total_steps)
    if start_when >= end_when:
        raise SparseLearningError(f"start_fraction {start_fraction} must be below end_fraction {end_fraction}")
    last_step = min(end_when, total_steps - 1)  # the last step that can prune: steps are 0 .. total_steps - 1
    decay = make_decay(
        method,
        options.pop("decay_schedule", method.decay_schedule),
        drop_fraction=None,
        density=density,
        start_when=start_when,
        last_step=last_step,
        interval=interval,
    )
    return assemble(
        method,
        model,
        optimizer,
        decay,
        density=1.0,
        update_frequency=check_positive_int(interval, "interval"),
        start_when=start_when,
        end_when=last_step + 1,
        total_steps=total_steps,
        **options,
    )


def _build_nm(method: Method, model: nn.Module, optimizer: Optimizer, options: dict[str, Any]) -> Masking:
    assert method.n_m is not None  # checked by Method
    if options.pop("density_overrides", None):
        raise SparseLearningError(f"{method.name} keeps N of every M weights in every layer: no density_overrides")
    if options.pop("sparse_compute", False):
        raise SparseLearningError(
            f"{method.name} trains dense weights (dense weight gradients every step): sparse_compute does not apply; "
            "allowed: false"
        )
    n, m = options.pop("n", method.n_m[0]), options.pop("m", method.n_m[1])
    exclude, include = options.pop("exclude", ()), options.pop("include", ())
    verify_sync = bool(options.pop("verify_sync", False))
    masking = NMMasking(
        optimizer,
        n,
        m,
        options.pop("sparse_refined_decay", method.sparse_refined_decay),
        observers=[MaskAgreement()] if verify_sync else [],
        **options,
    )
    masking.add_module(model, exclude=exclude, include=include)
    return masking


_BY_KIND: dict[str, Callable[[Method, nn.Module, Optimizer, dict[str, Any]], Masking]] = {
    DENSE: _build_dense,
    STATIC: _build_static,
    DYNAMIC: _build_dynamic,
    PRUNING: _build_pruning,
    NM: _build_nm,
}


def build(name: str, model: nn.Module, optimizer: Optimizer, **options: Any) -> Masking:
    """The Masking of the method table's entry `name` (`"RigL"`, `"Struct_RigL"`, `"RigL_reinit"`, your own
    registered method, ...) with the entry's Python defaults; `options` override them:

    - sparse methods: `density`, `sparse_init`;
    - drop-and-grow methods: `total_steps`, `drop_fraction`, `update_frequency`, `end_fraction`, `decay_schedule`;
    - pruning methods: `total_steps`, `start_fraction`, `end_fraction`, `interval`, `decay_schedule`;
    - masks from a saved run: `lottery_mask_path` (required) and `shuffle`;
    - N:M methods: `n`, `m`, `sparse_refined_decay`, `total_steps` (and `density`, only equal to n / m);
    - every method: `exclude`, `include` and any other `Masking` keyword (`growth_mode`, `seed`, `low_memory`,
      ...).

    A setting that does not fit the method (RigL with the `magnitude-prune` schedule) is refused in one line.

    :param name: a key of `sparselearning.method_table.table`
    :param model: the model
    :param optimizer: its optimizer
    """
    method = method_table.get(name)
    options = {key: value for key, value in options.items() if not (key == "decay_schedule" and value is None)}
    method_table.check_combination(
        method, decay_schedule=options.get("decay_schedule"), growth_mode=options.get("growth_mode")
    )
    return _BY_KIND[method.kind](method, model, optimizer, options)


def dense(model: nn.Module, optimizer: Optimizer, **masking_options: Any) -> Masking:
    """Dense training through the same interface (`step()` is `optimizer.step()`)."""
    return build("Dense", model, optimizer, **masking_options)


def small_dense(model: nn.Module, optimizer: Optimizer, **masking_options: Any) -> Masking:
    """Small-Dense: a dense model whose widths were scaled with `small_dense_width` (the models' `density`)."""
    return build("Small_Dense", model, optimizer, **masking_options)


def static(
    model: nn.Module, optimizer: Optimizer, density: float = 0.1, sparse_init: str = "random", **masking_options: Any
) -> Masking:
    """Static sparse: the initial mask never changes."""
    return build("Static", model, optimizer, density=density, sparse_init=sparse_init, **masking_options)


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
    return build(
        "SET",
        model,
        optimizer,
        density=density,
        total_steps=total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
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
    return build(
        "SNFS",
        model,
        optimizer,
        density=density,
        total_steps=total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
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
    return build(
        "RigL",
        model,
        optimizer,
        density=density,
        total_steps=total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        redistribution_mode=redistribution_mode,
        **masking_options,
    )


def srigl(
    model: nn.Module,
    optimizer: Optimizer,
    density: float = 0.1,
    total_steps: int = 1000,
    *,
    drop_fraction: float = 0.3,
    update_frequency: int = 100,
    end_fraction: float = 0.75,
    sparse_init: str = "fan-in-erdos-renyi-kernel",
    ablation: bool = True,
    **masking_options: Any,
) -> Masking:
    """SRigL (Lasby et al., ICLR 2024): RigL under a constant fan-in constraint, with neuron ablation.

    Every neuron (a row of a Linear weight, an output channel of a convolution) keeps the same number k of
    active inputs, after the init and after every update: the drop is by |w| and the regrowth by |gradient|
    within each neuron. A neuron with fewer than 30% of k salient weights (those RigL would keep by |w| or
    regrow by |gradient|) is ablated and the rest of its layer shares its budget, so each layer's active count
    stays exact (`sparselearning.funcs.fan_in`). The paper's defaults: ERK layer budgets, drop fraction 0.3
    annealed by a cosine, an update every 100 steps until 75% of training, gamma_sal = 0.3.

    `ablation=False` keeps every neuron (constant fan-in RigL, the paper's ablation baseline).
    """
    return build(
        "SRigL",
        model,
        optimizer,
        density=density,
        total_steps=total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        prune_mode="srigl" if ablation else "srigl-no-ablation",
        **masking_options,
    )


def nm(
    model: nn.Module,
    optimizer: Optimizer,
    n: int = 2,
    m: int = 4,
    total_steps: int = 1000,
    *,
    sparse_refined_decay: float = 2e-4,
    **masking_options: Any,
) -> Masking:
    """N:M sparse training by SR-STE (Zhou et al., ICLR 2021): the dense weights train; at every step the `n`
    largest |w| of every `m` consecutive inputs of every masked layer (a convolution's flattened
    in_channels * kh * kw) make the forward pass, the gradient reaches the dense weights straight through, plus
    the sparse-refined decay `sparse_refined_decay * (1 - mask) * w` (the paper's lambda_w = 2e-4).

    The density is `n / m` (a `density` given must equal it); `1 <= n <= m`, and every masked layer's fan-in must
    be a multiple of `m` (exclude those that are not). Between steps, and so in evaluation, checkpoints and
    export, the model holds the N:M weights; the dense ones travel in the masking's state
    (`sparselearning.sr_ste.NMMasking`).
    """
    return build(
        "NM",
        model,
        optimizer,
        n=n,
        m=m,
        total_steps=total_steps,
        sparse_refined_decay=sparse_refined_decay,
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
    return build(
        "Struct_RigL",
        model,
        optimizer,
        density=density,
        total_steps=total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        sparse_init=sparse_init,
        prune_mode=f"struct-magnitude-{criterion}",
        growth_mode=growth,
        **masking_options,
    )


def rigl_reinit(
    model: nn.Module,
    optimizer: Optimizer,
    lottery_mask_path: str | Path,
    total_steps: int = 1000,
    *,
    shuffle: bool = False,
    drop_fraction: float = 0.3,
    update_frequency: int = 100,
    end_fraction: float = 0.75,
    redistribution_mode: str = "none",
    **masking_options: Any,
) -> Masking:
    """RigL restarted from a finished run's masks (file or checkpoint) on freshly initialised weights: the
    command line's `masking=RigL_reinit`. `shuffle=True` keeps only each layer's density.
    """
    return build(
        "RigL_reinit",
        model,
        optimizer,
        lottery_mask_path=lottery_mask_path,
        shuffle=shuffle,
        total_steps=total_steps,
        drop_fraction=drop_fraction,
        update_frequency=update_frequency,
        end_fraction=end_fraction,
        redistribution_mode=redistribution_mode,
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
    return build(
        "Pruning",
        model,
        optimizer,
        density=density,
        total_steps=total_steps,
        start_fraction=start_fraction,
        end_fraction=end_fraction,
        interval=interval,
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
    return build("Lottery", model, optimizer, lottery_mask_path=lottery_mask_path, shuffle=shuffle, **masking_options)


# The seed API's builders by name, kept as they were; `build(name, ...)` covers every entry of the method
# table (RigL_reinit and registered methods too).
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
