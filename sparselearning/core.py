"""`Masking`: owns the masks of a model's weights and keeps weights and optimizer state consistent with them.

It does three things and nothing else: set up masks (`add_module`), keep masked weights and their optimizer
state at exactly zero on every step (`step`), and change which weights are active (`update_connections`),
delegating every decision to the registries in `sparselearning.funcs`. It is assembled from the parts in
`sparselearning.masking`: one record per masked parameter, the per-step apply, the update schedule, the update
arithmetic and observers. What else happens after an update (counting FLOPs, checking that ranks agree) is an
observer attached from outside (`sparselearning.counting.track_flops`, `sparselearning.sync.MaskAgreement`), so
this module imports neither.

Typical use, replacing `optimizer.step()` in an existing loop::

    masking = Masking(optimizer, CosineDecay(0.3, T_max=int(0.75 * total_steps)), density=0.1,
                      growth_mode="absolute-gradient", redistribution_mode="none",
                      update_frequency=100, end_when=int(0.75 * total_steps))
    masking.add_module(model)
    ...
    loss.backward()
    masking.step()          # drops/grows on update iterations, else masks gradients and steps the optimizer
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import nn

from sparselearning.coverage import (
    EXCLUDED,
    SPARSE_INIT,
    WeightCoverage,
    coverage_records,
    dense_share_warning,
    format_coverage,
    weight_aliases,
    weight_tensors,
)
from sparselearning.errors import (
    SparseLearningError,
    check_choice,
    check_density,
    check_positive_int,
)
from sparselearning.funcs.decay import Decay
from sparselearning.funcs.grow import registry as grow_registry
from sparselearning.funcs.init_scheme import DENSITY_COUNTS, as_boolean_mask, require_a_weight_per_layer
from sparselearning.funcs.init_scheme import registry as init_registry
from sparselearning.funcs.prune import GLOBAL_MODES
from sparselearning.funcs.prune import registry as prune_registry
from sparselearning.funcs.redistribute import PRESERVING_MODES
from sparselearning.funcs.redistribute import registry as redistribute_registry
from sparselearning.masking.apply import (
    as_ints,
    gradients_finite,
    multiply_by_masks,
    unscale_once,
    weight_decay_in_place,
    weight_shaped_state,
)
from sparselearning.masking.observers import EverActive, FlopsSource, MaskObserver
from sparselearning.masking.records import Holding, MaskDict, MaskedParameter, ParameterDict
from sparselearning.masking.schedule import UpdateSchedule, advance_decay
from sparselearning.masking.selection import (
    MASKABLE_TYPES as MASKABLE_TYPES,
)
from sparselearning.masking.selection import (
    Candidate,
    chosen_by,
    masked_by_default,
    weight_candidates,
)
from sparselearning.masking.sharding import gathered, shard_rows
from sparselearning.masking.sparse_compute import SparseCompute, check_sparse_compute
from sparselearning.masking.topology import TopologyChange, redistribution_shares, regrowth_counts
from sparselearning.misuse import require_momentum, stray_weights_error, unmatched_entry_error, warn_user
from sparselearning.ops.mask_chunks import float_chunks
from sparselearning.ops.rng import generator_for
from sparselearning.stats import LayerStats

log = logging.getLogger(__name__)

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _releases_scratch(method: _Method) -> _Method:
    """Scratch buffers live while the decorated method runs and are freed when the outermost such call returns,
    so nothing weight-sized is held between steps for them (only mask updates and checks use them)."""

    @functools.wraps(method)
    def wrapper(self: Masking, *args: Any, **kwargs: Any) -> Any:
        self._scratch_users += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._scratch_users -= 1
            if self._scratch_users == 0:
                self._scratch.clear()

    return cast(_Method, wrapper)


# Inits whose density comes from saved masks or weights, not from the `density` argument.
_INITS_FROM_EXISTING_MASKS = ("lottery-ticket", "lottery-ticket-dist", "resume")


def unwrap_model(module: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel and `torch.compile`, so weight names never carry
    `module.` or `_orig_mod.`.

    :param module: a model, possibly wrapped (several times, in any order)
    :return: the innermost model
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while True:
        if isinstance(module, wrappers):
            module = module.module
        elif isinstance(inner := getattr(module, "_orig_mod", None), nn.Module):  # what torch.compile returns
            module = inner
        else:
            return module


class Masking:
    """Wraps PyTorch model parameters with a sparse mask.

    Creates a bool mask for the weight of every Linear, convolution, multi-head attention and recurrent layer of
    the model, and of any other weight tensor `add_module(include=[...])` names (never biases, normalisation
    parameters or other one-dimensional ones). Masked weights, and every optimizer state tensor shaped like a
    masked weight, are exactly zero after every `step()`.

    Removing layers: `remove_weight(name)` (exact parameter or module name), `remove_weight_partial_name(part)`
    and `remove_type(nn_type)`; or pass them as `add_module(model, exclude=[...])` so the initial density is
    solved without them. Removed after initialisation, a layer simply becomes dense (and trainable) again.

    :param optimizer: the optimizer stepping the model's parameters
    :param prune_rate_decay: schedule of the drop fraction (`sparselearning.funcs.decay`); None never drops
    :param density: fraction of masked weights that are active, in (0, 1]
    :param sparse_init: initial masks, a key of `sparselearning.funcs.init_scheme.registry`
    :param dense_gradients: keep gradients (hence momentum) dense, as SNFS needs; masked weights are zeroed
        after each step instead
    :param prune_mode: a key of `sparselearning.funcs.prune.registry`
    :param growth_mode: a key of `sparselearning.funcs.grow.registry`
    :param redistribution_mode: a key of `sparselearning.funcs.redistribute.registry`
    :param prune_threshold: kept for compatibility with the seed project (unused: selection is exact)
    :param growth_threshold: kept for compatibility with the seed project (unused: selection is exact)
    :param growth_increment: kept for compatibility with the seed project (unused)
    :param increment: kept for compatibility with the seed project (unused)
    :param tolerance: kept for compatibility with the seed project (unused)
    :param seed: keys every random decision, with the step and the layer
    :param update_frequency: if set, `step()` runs `update_connections()` instead every this many steps
    :param end_when: with `update_frequency`, the step from which masks no longer change
    :param start_when: with `update_frequency`, the first step at which masks may change
    :param low_memory: keep no ever-active record (the ITOP rate's, an eighth of a byte per weight): the masks then
        cost exactly their 1 byte per weight
    :param keep_grown_momentum: under dense gradients, a regrown weight keeps the momentum it gathered while
        inactive (Dettmers & Zettlemoyer's code does), so its first step moves it; False starts it from zero
    :param total_steps: the run's planned number of `step()` calls, if known: stepping past it warns once
    :param allow_empty_layers: False refuses a `density` at which a uniform, ER or ERK init leaves some masked
        layer without an active weight, naming the smallest density that avoids it (the method builders in
        `sparselearning.methods` pass False)
    :param sparse_compute: True computes masked `nn.Linear` layers on the CPU with their active weights only
        (`sparselearning.masking.sparse_compute`: same weights, masks and optimizer state, faster at high
        sparsity); "auto" times sparse against dense per layer on the first batch; False (default) never
    :param observers: called after every mask update and restore (`sparselearning.masking.observers`); more
        with `add_observer`. The cross-rank mask check is one: `sparselearning.sync.MaskAgreement()` (the
        builders in `sparselearning.methods` attach it for `verify_sync=True`); FLOPs tracking is another
        (`sparselearning.counting.track_flops(masking, example_input)`).

    Misuse is refused early with one line (`SparseLearningError`): momentum growth or redistribution with an
    optimizer that keeps no momentum (when built, if it has a `prune_rate_decay`), an exclude entry matching
    no weight, and masked weights made nonzero outside Masking, e.g. by `optimizer.step()` in place of
    `masking.step()` (found by `check()`, which runs at every mask update and whenever `stats` is read).
    Frozen weights (`requires_grad=False`) are never masked. `coverage` lists every weight tensor of the
    model, masked or dense and why; `add_module` logs it and warns (`SparseLearningWarning`) when tensors
    holding 1% or more of the model's weights stay dense without being excluded on purpose.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        prune_rate_decay: Decay | None = None,
        density: float = 0.1,
        sparse_init: str = "random",
        dense_gradients: bool = False,
        prune_mode: str = "magnitude",
        growth_mode: str = "momentum",
        redistribution_mode: str = "momentum",
        prune_threshold: float = 0.001,
        growth_threshold: float = 0.001,
        growth_increment: float = 0.2,
        increment: float = 0.2,
        tolerance: float = 1e-6,
        *,
        seed: int = 0,
        update_frequency: int | None = None,
        end_when: int | None = None,
        start_when: int = 0,
        low_memory: bool = False,
        keep_grown_momentum: bool = False,
        total_steps: int | None = None,
        allow_empty_layers: bool = True,
        observers: Iterable[MaskObserver] = (),
        sparse_compute: bool | str = False,
    ):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise SparseLearningError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.prune_rate_decay = prune_rate_decay
        self.density = check_density(density)
        self.sparse_init = check_choice("sparse_init", sparse_init, init_registry)
        self.dense_gradients = bool(dense_gradients)
        self.prune_mode = check_choice("prune_mode", prune_mode, prune_registry)
        self.growth_mode = check_choice("growth_mode", growth_mode, grow_registry)
        self.redistribution_mode = check_choice("redistribution_mode", redistribution_mode, redistribute_registry)
        self.prune_threshold = prune_threshold
        self.growth_threshold = growth_threshold
        self.growth_increment = growth_increment
        self.increment = increment
        self.tolerance = tolerance
        self.seed = int(seed)
        self.schedule = UpdateSchedule(update_frequency, start_when, end_when)
        self.low_memory = bool(low_memory)
        self.keep_grown_momentum = bool(keep_grown_momentum)
        self.total_steps = None if total_steps is None else check_positive_int(total_steps, "total_steps")
        self.allow_empty_layers = bool(allow_empty_layers)
        self.sparse_compute = check_sparse_compute(sparse_compute)
        if prune_rate_decay is not None:
            require_momentum(optimizer, self.growth_mode, self.redistribution_mode)

        self.module: nn.Module | None = None
        self.records: dict[str, MaskedParameter] = {}  # one per masked parameter, in registration order
        self._mask_view = MaskDict(self.records)
        self._param_view = ParameterDict(self.records)
        self._stats = LayerStats()
        self.name2prune_rate: dict[str, float] = {}
        self.density_overrides: dict[str, float] = {}  # masked parameter name -> its own density
        self.dense_layers: set[str] = set()
        self.mask_step = 0
        self.baseline_nonzero = 0
        self.total_params = 0

        self.observers: list[MaskObserver] = list(observers)
        self._ever_active: EverActive | None = None
        self._sparse: list[MaskedParameter] = []  # records with inactive positions: what the hot path touches
        self._scratch: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._scratch_users = 0  # running updates and checks: scratch is freed when the last one returns
        self._initialised = False
        self._weights: dict[str, nn.Parameter] = {}  # every weight tensor of the model, masked or not
        self._dense_reasons: dict[int, str] = {}  # id(weight) -> why a maskable weight is not masked
        self._removal_reason = EXCLUDED
        self._checked_versions: tuple[int, ...] | None = None
        self._zeroed: list[tuple[int, weakref.ref[torch.Tensor], int]] = []  # see _zeroing_state
        self._grown_positions: dict[str, torch.Tensor] = {}  # this update's growth, as rules reported it
        self._past_end_step = math.inf if self.total_steps is None else self.total_steps

    # ------------------------------------------------------------------ the schedule (seed names)

    @property
    def update_frequency(self) -> int | None:
        """Steps between mask updates (None: masks change only when `update_connections()` is called)."""
        return self.schedule.frequency

    @property
    def start_when(self) -> int:
        """The first step at which masks may change."""
        return self.schedule.start

    @property
    def end_when(self) -> int | None:
        """The step from which masks no longer change (None: never stops)."""
        return self.schedule.end

    # ------------------------------------------------------------------ set-up

    def add_module(
        self,
        module: nn.Module,
        lottery_mask_path: str | Path | None = None,
        *,
        exclude: Iterable[str | type[nn.Module]] = (),
        include: Iterable[str | type[nn.Module]] = (),
        density_overrides: Mapping[str, float] | None = None,
    ) -> None:
        """Register the model (bare or DDP-wrapped), build its initial masks and zero what they mask.

        What is masked (`sparselearning.masking.selection`): by default the weights of Linear, Conv*,
        MultiheadAttention (its input projections) and RNN/LSTM/GRU layers; `include` adds other weight tensors
        (an embedding table, a custom module's matrix), `exclude` keeps some dense. Entries of both are glob
        patterns on parameter names, exact parameter or module names, parts of names, or module classes (which
        cover everything inside such a module). A string entry that matches no weight tensor is refused, naming
        the closest names.

        :param module: the model
        :param lottery_mask_path: saved masks for the lottery-ticket inits
        :param exclude: weights to keep dense
        :param include: weights to mask beyond the default ones
        :param density_overrides: `{entry: density}` for masked weights that should hold their own density (an
            entry as in `include`); the other weights share what remains by `sparse_init` (uniform, ER or ERK),
            so the overall density stays exact. Dynamic methods keep each layer's count unless they
            redistribute (SNFS moves them).
        """
        if self._initialised:
            raise SparseLearningError("add_module() was already called on this Masking; create a new one per model")
        self.module = unwrap_model(module)
        self._weights = weight_tensors(self.module)
        candidates = weight_candidates(self.module)
        included: set[int] = set()
        for entry in include:
            included.update(id(c.parameter) for c in self._named_by(entry, candidates, "include"))
        selected: list[tuple[nn.Parameter, list[Holding]]] = []
        for candidate in candidates:
            # Frozen weights are never masked: they never change (listed as "frozen" in `coverage`).
            if candidate.parameter.requires_grad and (
                candidate.masked_by_default or id(candidate.parameter) in included
            ):
                # A tied weight is known by its name in a module that masks it by default (a tied LM head, not the
                # embedding table), and takes that name's place in the model's order.
                holdings = sorted(candidate.holdings, key=lambda h: not masked_by_default(h.module, h.attribute))
                selected.append((candidate.parameter, holdings))
        order = {name: index for index, (name, _) in enumerate(self.module.named_parameters(remove_duplicate=False))}
        for weight, holdings in sorted(selected, key=lambda item: order[item[1][0].name]):
            mask = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
            name = holdings[0].name
            shard = shard_rows(name, weight)
            record = MaskedParameter(name, weight, tuple(holdings), len(self.records), mask, shard=shard)
            self.records[record.name] = record
        for item in exclude:
            self._exclude(item, candidates)
        self._resolve_overrides(density_overrides or {}, candidates)
        if not self.records:
            raise SparseLearningError(
                f"{type(self.module).__name__} has no layer to mask: Masking masks the weights of nn.Linear, "
                "nn.Conv*, nn.MultiheadAttention and RNN/LSTM/GRU layers and what include=[...] names (after "
                "exclusions), and found none"
            )
        self.init(lottery_mask_path)
        self._report_coverage()

    def _resolve_overrides(self, overrides: Mapping[str, float], candidates: list[Candidate]) -> None:
        """Per-tensor densities by masked parameter name, from entries; refused in one line when an entry names
        no masked weight, two entries name the same one, or the init cannot honour them."""
        if overrides and (self.sparse_init not in DENSITY_COUNTS or self.density >= 1.0):
            raise SparseLearningError(
                "density_overrides need a sparse run (density < 1) with a uniform, ER or ERK sparse_init "
                f"({', '.join(DENSITY_COUNTS)}); got density {self.density} and sparse_init {self.sparse_init!r}"
            )
        model = self.module
        assert model is not None, "called by add_module"
        masked = {id(record.parameter): name for name, record in self.records.items()}
        for entry, density in overrides.items():
            check_density(density, f"density_overrides[{entry!r}]")
            names = [masked[id(c.parameter)] for c in chosen_by(model, entry, candidates) if id(c.parameter) in masked]
            if not names:
                raise unmatched_entry_error(entry, list(self.records), option="density_overrides")
            for name in names:
                if name in self.density_overrides:
                    raise SparseLearningError(f"density_overrides name {name!r} twice (the second time as {entry!r})")
                self.density_overrides[name] = float(density)

    def _named_by(self, entry: str | type[nn.Module], candidates: list[Candidate], option: str) -> list[Candidate]:
        """The weight tensors an include/exclude entry names; a name or pattern naming none is refused in one line
        (a module class that the model does not use names none, quietly)."""
        assert self.module is not None, "called by add_module"
        chosen = chosen_by(self.module, entry, candidates)
        if not chosen and isinstance(entry, str):
            raise unmatched_entry_error(entry, [name for c in candidates for name in c.names], option=option)
        return chosen

    def _exclude(self, item: str | type[nn.Module], candidates: list[Candidate]) -> None:
        """Keep the weights an exclude entry names dense, and remember that this was the user's choice."""
        chosen_ids = {id(c.parameter) for c in self._named_by(item, candidates, "exclude")}
        self._dense_reasons.update(dict.fromkeys(chosen_ids, EXCLUDED))
        for name in [n for n, record in self.records.items() if id(record.parameter) in chosen_ids]:
            self._forget(name)

    @property
    def coverage(self) -> list[WeightCoverage]:
        """One record per weight tensor of the model (every parameter of 2+ dims): name, shape, size, masked or
        dense, and why dense (`sparselearning.coverage`); `format_coverage(masking.coverage)` makes a table."""
        if self.module is None:
            return []
        masked = {name: record.parameter for name, record in self.records.items()}
        return coverage_records(self.module, masked, self._dense_reasons)

    def coverage_table(self) -> str:
        """`coverage` as a short text table with sizes (what `add_module` logs)."""
        return format_coverage(self.coverage)

    def _report_coverage(self) -> None:
        records = self.coverage
        log.info("%s", format_coverage(records))
        sparse_run = self.density < 1.0 or self.prune_rate_decay is not None
        message = dense_share_warning(records) if sparse_run else None
        if message is not None:
            warn_user(message)

    @torch.no_grad()
    def init(self, lottery_mask_path: str | Path | None = None) -> None:
        """Build the initial masks with `sparse_init`, then zero masked weights and optimizer state.

        :param lottery_mask_path: saved masks, for the lottery-ticket inits
        """
        with self._whole_tensors():
            self._initial_masks(lottery_mask_path)
        if not self.low_memory:
            self._ever_active = EverActive(self.mask_dict)
            self.observers.append(self._ever_active)
        if self.sparse_compute:
            compute = SparseCompute(
                self.records, self.sparse_compute, self._needs_dense_weight_grad, lambda: self.mask_step
            )
            compute.install()
            self.observers.append(compute)
        log.info(
            "masking %d layers, %d of %d weights active (density %.4f)",
            len(self.records),
            self.baseline_nonzero,
            self.total_params,
            self._stats.total_density,
        )

    def _initial_masks(self, lottery_mask_path: str | Path | None) -> None:
        self._removal_reason = SPARSE_INIT  # layers the scheme itself drops (channel-wise inits drop Linear ones)
        try:
            init_registry[self.sparse_init](self, lottery_mask_path=lottery_mask_path)
        finally:
            self._removal_reason = EXCLUDED
        for name, record in self.records.items():
            mask = record.mask
            if not isinstance(mask, torch.Tensor) or mask.shape != record.parameter.shape:
                raise SparseLearningError(f"sparse_init {self.sparse_init!r} produced a bad mask for {name!r}")
            record.mask = mask.to(device=record.parameter.device, dtype=torch.bool)
        if not self.allow_empty_layers and self.sparse_init in DENSITY_COUNTS:
            require_a_weight_per_layer(self)
        self._initialised = True
        self._refresh()
        self.baseline_nonzero = self._stats.total_nonzero
        self.total_params = self._stats.total_nonzero + self._stats.total_zero
        if self.sparse_init in _INITS_FROM_EXISTING_MASKS:
            self.density = self._stats.total_density
        if self.density < 1.0:
            self.dense_layers = {name for name, record in self.records.items() if record.inactive == 0}
        self.apply_mask()
        self.reset_momentum()

    def add_observer(self, observer: MaskObserver) -> None:
        """Call `observer` after every mask update and restore from now on (`sparselearning.masking.observers`)."""
        self.observers.append(observer)

    # ------------------------------------------------------------------ what is reported

    @property
    def stats(self) -> LayerStats:
        """Counts per masked layer and over the model (`LayerStats`), checked first: reading them never reports a
        density the weights no longer have. The check is skipped while no weight changed since the last one
        (their version counters, which every in-place update such as `optimizer.step()` advances, are equal)."""
        self._verify(skip_if_unchanged=True)
        return self._stats

    @stats.setter
    def stats(self, value: LayerStats) -> None:
        self._stats = value

    @property
    def ever_active(self) -> dict[str, torch.Tensor]:
        """Per masked layer, the weights that have been active at any step, as bool tensors (empty under
        `low_memory`). The record is kept at one bit per weight; each read unpacks a copy."""
        return {} if self._ever_active is None else self._ever_active.masks

    @property
    def ever_active_count(self) -> int | None:
        """How many masked weights have been active at any step (None under `low_memory`, which keeps no record):
        the numerator of the ITOP rate, counted on the packed record without unpacking it."""
        return None if self._ever_active is None else self._ever_active.count()

    def check(self) -> None:
        """Prove that every masked weight is zero, and measure the nonzero count of all the model's weights.

        Raises `SparseLearningError` when masked weights are nonzero: something changed the weights outside
        Masking, typically `optimizer.step()` called in place of `masking.step()`. Costs one pass over the
        weights and one host sync; runs at every mask update (skipped there when Masking itself zeroed the
        weights last, after a dense-gradient step, and no weight or mask changed since) and, when weights
        changed, whenever `stats` is read; never on the per-step path.
        """
        self._verify(skip_if_unchanged=False)

    @torch.no_grad()
    @_releases_scratch
    def _verify(self, skip_if_unchanged: bool, measure: bool = True) -> None:
        """Raise if a masked weight is nonzero; with `measure`, also count the nonzero values of every weight
        tensor of the model into `stats` (skipped, like the check, if `skip_if_unchanged` and no weight's
        version counter moved since the last measurement)."""
        if not self._initialised:
            return
        if not measure and self._zeroed_since(list(self._sparse)):
            return  # Masking itself zeroed them last (dense gradients zero weights after each step)
        weights = list(self._weights.values())
        versions = tuple(weight._version for weight in weights)
        if skip_if_unchanged and versions == self._checked_versions:
            return
        with self._whole_tensors():
            self._count_weights(versions, measure)

    def _count_weights(self, versions: tuple[int, ...], measure: bool) -> None:
        weights = list(self._weights.values())
        sparse = list(self._sparse)
        counts = as_ints(
            [self._count_stray(record) for record in sparse]
            + ([torch.count_nonzero(weight) for weight in weights] if measure else [])
        )
        if measure:
            self._stats.set_model_counts(sum(counts[len(sparse) :]), sum(weight.numel() for weight in weights))
        suspects = [record for record, count in zip(sparse, counts, strict=False) if count]
        # The fast count also flags NaN/inf at active positions (inf - inf * 1 is NaN): recount suspects exactly.
        exact = as_ints([torch.count_nonzero(r.parameter.masked_fill(r.mask, 0)) for r in suspects])
        stray = {record.name: count for record, count in zip(suspects, exact, strict=True) if count}
        if stray:
            raise stray_weights_error(stray)
        if measure:
            self._checked_versions = versions

    def _count_stray(self, record: MaskedParameter) -> torch.Tensor:
        """How many masked positions of a parameter hold a nonzero weight (a 0-dim tensor: no host sync here).

        `w - w * mask` is exactly `w` at masked positions and exactly 0 at active ones: one fused pass per chunk of
        the mask in floats, far faster than bool masking, with no weight-sized temporary.
        """
        weight = record.parameter.detach().reshape(-1)
        counts = [
            torch.count_nonzero(torch.addcmul(values, values, floats, value=-1.0, out=floats))
            for floats, values in float_chunks(record.mask, weight, dtype=weight.dtype)
        ]
        return torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.int64)

    # ------------------------------------------------------------------ what the rule functions read

    @property
    def mask_dict(self) -> MaskDict:
        """Bool mask per masked parameter name; assigning `mask_dict[name] = mask` replaces that mask."""
        return self._mask_view

    @property
    def masks(self) -> MaskDict:
        """The seed project's name for `mask_dict`."""
        return self._mask_view

    @property
    def params(self) -> ParameterDict:
        """The masked parameters by name."""
        return self._param_view

    @property
    def prune_func(self) -> Callable[..., Any]:
        """The prune function of `prune_mode` (always in sync with it)."""
        return prune_registry[self.prune_mode]

    @property
    def growth_func(self) -> Callable[..., Any]:
        """The growth function of `growth_mode`."""
        return grow_registry[self.growth_mode]

    @property
    def redistribution_func(self) -> Callable[..., Any]:
        """The redistribution statistic of `redistribution_mode`."""
        return redistribute_registry[self.redistribution_mode]

    @property
    def global_prune(self) -> bool:
        """Whether `prune_mode` prunes all layers at once (one global threshold)."""
        return self.prune_mode in GLOBAL_MODES

    @property
    def prune_rate(self) -> float:
        """The decay's current value: a drop fraction, or for pruning the share of weights still to remove."""
        return 0.0 if self.prune_rate_decay is None else float(self.prune_rate_decay.get_dr())

    def layer_module(self, name: str) -> nn.Module:
        """The module that owns masked weight `name`.

        :param name: a weight name, e.g. `conv1.weight`
        """
        return self.records[name].owner

    def is_conv(self, name: str) -> bool:
        """Whether weight `name` belongs to a convolution.

        :param name: a weight name
        """
        return isinstance(self.records[name].owner, nn.modules.conv._ConvNd)

    def prunable_names(self) -> list[str]:
        """Masked layers an update may change: all but those a sparse init made fully dense."""
        return [name for name in self.records if name not in self.dense_layers]

    def generator(self, name: str, purpose: int = 0) -> torch.Generator:
        """The CPU generator for a random decision on layer `name` at the current step.

        :param name: the layer (weight name)
        :param purpose: separates independent streams at the same step and layer (init, growth, shuffle)
        """
        return generator_for(self.seed, self.mask_step, self.records[name].index, purpose)

    def scratch(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A reusable flat buffer of at least `numel` entries, so updates do not allocate per layer. It is freed
        when the mask update or check that asked for it returns (nothing is held between steps for it).

        :param numel: entries needed
        :param dtype: element type
        :param device: where the buffer lives
        """
        key = (torch.device(device), dtype)
        buffer = self._scratch.get(key)
        if buffer is None or buffer.numel() < numel:
            self._scratch.pop(key, None)  # the smaller buffer goes before the larger one is made, not after
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._scratch[key] = buffer
        return buffer[:numel]

    def record_growth(self, name: str, positions: torch.Tensor) -> None:
        """Note the flat positions a growth rule activated in `name` during this update (all inactive before),
        so that resetting their optimizer state touches them alone instead of searching the whole layer.

        :param name: a weight name
        :param positions: flat indices (int64) of the newly active weights
        """
        self._grown_positions[name] = positions

    def get_momentum_for_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Return momentum from optimizer: SGD's buffer, or Adam's `exp_avg / (sqrt(exp_avg_sq) + eps)`.

        :param weight: a masked weight
        :return: a tensor shaped like the weight
        """
        state = self.optimizer.state.get(weight, {})
        if "exp_avg" in state and "exp_avg_sq" in state:
            eps = next(
                (g.get("eps", 1e-8) for g in self.optimizer.param_groups if any(p is weight for p in g["params"])), 1e-8
            )
            ratio: torch.Tensor = state["exp_avg"] / (torch.sqrt(state["exp_avg_sq"]) + eps)
            return ratio
        buffer: torch.Tensor | None = state.get("momentum_buffer")
        if buffer is not None:
            return buffer
        raise SparseLearningError(
            "momentum growth/redistribution needs optimizer momentum (SGD with momentum > 0, Adam or AdamW) and a "
            "first optimizer step; use growth_mode='absolute-gradient' and redistribution_mode='none' otherwise"
        )

    def float_mask(self, name: str) -> torch.Tensor:
        """The mask of `name` as 0.0/1.0 in the weight's dtype, freshly allocated (4 bytes per weight while the
        caller keeps it; `sparselearning.ops.mask_chunks.float_chunks` does float arithmetic with a mask without it).

        :param name: a weight name
        """
        return self.records[name].as_float()

    # ------------------------------------------------------------------ FLOPs (from a tracking observer)

    def _flops(self) -> FlopsSource:
        for observer in self.observers:
            if isinstance(observer, FlopsSource):
                return observer
        raise SparseLearningError(
            "FLOPs are not tracked: call sparselearning.counting.track_flops(masking, example_input) first"
        )

    @property
    def inference_FLOPs(self) -> float:
        """FLOPs per example of the model with its current masks."""
        return self._flops().inference_flops()[0]

    @property
    def dense_FLOPs(self) -> float:
        """FLOPs per example of the same model without masks."""
        return self._flops().inference_flops()[1]

    @property
    def avg_inference_FLOPs(self) -> float:
        """Inference FLOPs per example averaged over the steps so far (each mask weighted by its lifetime)."""
        return self._flops().average(self.mask_step)

    @contextlib.contextmanager
    def _whole_tensors(self) -> Iterator[None]:
        """Whole tensors in place of FSDP2 shards for an update, the initial masks, a restore or a count
        (`sparselearning.masking.sharding.gathered`); nothing to do when no masked parameter is sharded."""
        sharded = [record for record in self.records.values() if record.shard is not None]
        if not sharded:
            yield
            return
        with gathered(sharded, self.optimizer, self._weights):
            yield
        self._refresh()  # recount on this rank's shards again

    # ------------------------------------------------------------------ the hot path

    def mask_gradients(self) -> None:
        """Zero the gradients of masked weights (done by `step()`; call it yourself before gradient clipping).

        Does nothing on an update iteration (`is_update_step()`), whose growth needs the dense gradient.
        """
        if self.is_update_step():
            return
        pairs = [(r.parameter.grad, r) for r in self._sparse if r.parameter.grad is not None]
        multiply_by_masks([g for g, _ in pairs], [r for _, r in pairs])

    def apply_mask(self) -> None:
        """Zero the masked weights (in place on the parameters, so their version counters see it)."""
        records = list(self._sparse)
        multiply_by_masks([r.parameter for r in records], records)
        self._zeroed = self._zeroing_state(records)

    @staticmethod
    def _zeroing_state(records: list[MaskedParameter]) -> list[tuple[int, weakref.ref[torch.Tensor], int]]:
        """What proves that `apply_mask` left these weights zero where masked, while it is unchanged: each
        weight's version counter, its mask (a weak reference: a replaced mask is not kept alive, and a new one
        never passes for it) and the mask's version counter."""
        return [(r.parameter._version, weakref.ref(r.mask), r.mask._version) for r in records]

    def _zeroed_since(self, records: list[MaskedParameter]) -> bool:
        """Whether no weight and no mask changed since `apply_mask` zeroed the masked weights."""
        now = self._zeroing_state(records)
        return len(now) == len(self._zeroed) and all(
            a[0] == b[0] and a[1]() is b[1]() is not None and a[2] == b[2]
            for a, b in zip(now, self._zeroed, strict=True)
        )

    @torch.no_grad()
    def reset_momentum(self) -> None:
        """Zero, at masked positions, every optimizer state tensor shaped like its weight (any optimizer)."""
        tensors, records = [], []
        for record in self._sparse:
            for value in weight_shaped_state(self.optimizer, record.parameter):
                tensors.append(value)
                records.append(record)
        multiply_by_masks(tensors, records)

    def _needs_dense_weight_grad(self) -> bool:
        """Whether the coming `step()` reads dense weight gradients (a mask update, or dense gradients)."""
        return self.dense_gradients or self.is_update_step()

    def is_update_step(self) -> bool:
        """Whether `step()` will update the masks now (needs `update_frequency`)."""
        return self.schedule.is_update_step(self.mask_step)

    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """Use in place of `optimizer.step()`: masks gradients, steps the optimizer, advances the schedules.

        With `update_frequency` set, an update iteration runs `update_connections()` instead (the optimizer
        does not step then, as in RigL). Afterwards `.grad` holds the masked gradient (plus the L2 weight
        decay term for SGD, Adam and RMSprop, which is added in place here instead of into a new tensor).

        With a `GradScaler` (float16 training), pass it here instead of calling `scaler.step`/`update`:
        gradients are unscaled first, so growth ranks true gradients, and an iteration whose gradients are
        not finite is skipped whole: no optimizer step and no mask change.

        :param scaler: the GradScaler of float16 training, or None
        """
        if self.mask_step >= self._past_end_step:
            self._warn_past_end()
        if scaler is not None:
            unscale_once(scaler, self.optimizer)
        if self.is_update_step():
            if scaler is None or gradients_finite(self.optimizer):
                self.update_connections()
            else:
                self._advance_decay()
                self.mask_step += 1
            if scaler is not None:
                scaler.update()
            return
        self._advance_decay()
        if self.dense_gradients:
            self._optimizer_step(scaler)
            self.apply_mask()
        else:
            self.mask_gradients()
            with weight_decay_in_place(self.optimizer):
                self._optimizer_step(scaler)
        if scaler is not None:
            scaler.update()
        self.mask_step += 1

    def _warn_past_end(self) -> None:
        """Warn once that the run goes on past the `total_steps` its schedules were planned for."""
        self._past_end_step = math.inf
        warn_user(
            f"masking.step() called for step {self.mask_step + 1} of a run planned for total_steps="
            f"{self.total_steps}: mask and drop-fraction schedules are past their end; pass the true total_steps"
        )

    def _optimizer_step(self, scaler: torch.amp.GradScaler | None) -> None:
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)

    def _advance_decay(self) -> None:
        advance_decay(self.prune_rate_decay, self.mask_step, self._stats.total_density)

    # ------------------------------------------------------------------ mask updates

    def update_connections(self) -> TopologyChange:
        """One drop/grow update; call it instead of `step()` on an update iteration, after `backward()`.

        :return: what changed (weights dropped and grown per layer)
        """
        for observer in self.observers:
            if isinstance(observer, SparseCompute):
                modes = {"prune_mode": self.prune_mode, "growth_mode": self.growth_mode}
                observer.refuse_sampled_gradients({**modes, "redistribution_mode": self.redistribution_mode})
        self._advance_decay()
        change = self.truncate_weights()
        self.mask_step += 1
        return change

    @torch.no_grad()
    @_releases_scratch
    def truncate_weights(self) -> TopologyChange:
        """Perform grow / prune / redistribution step, then tell the observers what changed.

        Growth functions only add positions; everything inactive after the drop is already zero, so grown
        weights (and, under sparse gradients, their optimizer state) start at exactly zero.

        :return: what changed (weights dropped and grown per layer)
        """
        with self._whole_tensors():
            return self._drop_and_grow()

    def _drop_and_grow(self) -> TopologyChange:
        self._grown_positions.clear()
        self._verify(skip_if_unchanged=False, measure=False)
        rate = self.prune_rate
        prunable = self.prunable_names()
        self.name2prune_rate = {name: (rate if name in prunable else 0.0) for name in self.records}
        self._gather_redistribution(prunable)

        before = dict(self._stats.nonzeros_dict)
        if self.global_prune:
            self._stats.total_removed = self.prune_func(self)
        else:
            self._stats.removed_dict = dict.fromkeys(self.records, 0)
            for name in prunable:
                self.mask_dict[name] = self.prune_func(self, self.mask_dict[name], self.params[name], name)
        self._refresh()
        removed = {name: before[name] - self._stats.nonzeros_dict[name] for name in self.records}
        self._stats.removed_dict = removed
        self._stats.total_removed = sum(removed.values())
        # Dropped weights, and (sparse gradients) their optimizer state, become exactly zero.
        self.apply_mask()
        if not self.dense_gradients:
            self.reset_momentum()

        after_drop = dict(self._stats.nonzeros_dict)
        if self.growth_mode != "none" and self._stats.total_removed > 0:
            zero_grown = self.dense_gradients and not self.keep_grown_momentum
            counts = regrowth_counts(
                prunable,
                removed,
                redistribute=self.redistribution_mode not in PRESERVING_MODES and not self.global_prune,
                shares=self._stats.variance_dict,
                capacities=self._stats.zeros_dict,
            )
            for name, count in counts.items():
                if count > 0:
                    # One layer's mask before growth at a time (a growth rule may change the mask in place).
                    previous = self.mask_dict[name].clone() if zero_grown else None
                    self.mask_dict[name] = self.growth_func(self, name, count, self.params[name])
                    if previous is not None:
                        self._reset_grown_state(name, previous)
            self._refresh()
        grown = {name: self._stats.nonzeros_dict[name] - after_drop[name] for name in self.records}
        change = TopologyChange(self.mask_step, self.mask_dict, removed, grown)
        for observer in list(self.observers):
            observer.after_update(change)
        return change

    def _gather_redistribution(self, prunable: list[str]) -> None:
        if self.redistribution_mode in PRESERVING_MODES:
            self._stats.variance_dict = {}
            self._stats.total_variance = 0.0
            return
        raw = {name: self.redistribution_func(self, name, self.params[name], self.mask_dict[name]) for name in prunable}
        self._stats.total_variance, self._stats.variance_dict = redistribution_shares(raw)

    def _reset_grown_state(self, name: str, before: torch.Tensor) -> None:
        """Under dense gradients, reset the momentum of the weights of `name` grown since its mask was `before`
        (under sparse gradients it is zero already)."""
        # Positions active now and not before, as indices (a few percent of the layer): index_fill_ touches only
        # them, where masked_fill_ would pass over the whole state tensor.
        mask = self.mask_dict[name]
        grown = self._grown_positions.get(name)
        if grown is None:  # a rule that did not say where it grew
            grown = torch.nonzero(mask.reshape(-1) > before.reshape(-1)).view(-1)
        for value in weight_shaped_state(self.optimizer, self.params[name]):
            if value.is_contiguous():
                value.view(-1).index_fill_(0, grown, 0.0)
            else:  # e.g. channels_last state: no flat view
                value.masked_fill_(mask & ~before, 0.0)

    # ------------------------------------------------------------------ bookkeeping

    def _refresh(self) -> None:
        """Recount, and rebuild what the hot path reads: which layers have inactive weights."""
        records = list(self.records.values())
        counts = as_ints([torch.count_nonzero(record.mask) for record in records])
        for record, count in zip(records, counts, strict=True):
            record.active = count
        self._stats.set_counts({r.name: r.active for r in records}, {r.name: r.numel for r in records})
        self._sparse = [record for record in records if record.inactive > 0]

    def remove_weight(self, name: str) -> None:
        """Stop masking one weight, by parameter name or by its module's name.

        :param name: `fc.weight` or `fc`
        """
        key = name if name in self.records else f"{name}.weight"
        if key not in self.records:
            raise SparseLearningError(f"no masked weight named {name!r}; masked: {', '.join(self.records)}")
        self._forget(key)

    def remove_weight_partial_name(self, partial_name: str) -> None:
        """Stop masking every weight whose name contains `partial_name` (eg: 'conv').

        A part that is in no weight tensor's name at all (a typo) is refused, naming the closest names.

        :param partial_name: a substring of weight names
        """
        if self.module is not None:
            names = [name for name, _ in weight_aliases(self.module)]
            if not any(partial_name in name for name in names):
                raise unmatched_entry_error(partial_name, names)
        for name in [n for n in self.records if partial_name in n]:
            self._forget(name)

    def remove_type(self, nn_type: type[nn.Module]) -> None:
        """Stop masking the weights of every module of a type (eg: nn.Conv2d).

        :param nn_type: a module class
        """
        for name in [n for n, record in self.records.items() if isinstance(record.owner, nn_type)]:
            self._forget(name)

    def _forget(self, name: str) -> None:
        record = self.records.pop(name)
        self._dense_reasons.setdefault(id(record.parameter), self._removal_reason)
        self.dense_layers.discard(name)
        self.density_overrides.pop(name, None)
        for observer in self.observers:
            observer.forget(name)
        if self._initialised:
            self._refresh()
            self.total_params = self._stats.total_nonzero + self._stats.total_zero
            self.baseline_nonzero = self._stats.total_nonzero

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Masks, counters, schedule and statistics: everything a bit-exact resume needs (weights_only-safe).
        Observers that keep state (the ever-active record, FLOPs tracking) add it under their `state_key`."""
        state: dict[str, Any] = {
            "masks": {name: record.mask.detach().cpu().clone() for name, record in self.records.items()},
            "ever_active": {},
            "mask_step": self.mask_step,
            "baseline_nonzero": self.baseline_nonzero,
            "total_params": self.total_params,
            "dense_layers": sorted(self.dense_layers),
            "name2prune_rate": dict(self.name2prune_rate),
            "stats": self._stats.state_dict(),
            "decay": None if self.prune_rate_decay is None else self.prune_rate_decay.state_dict(),
            "config": {
                "density": self.density,
                "sparse_init": self.sparse_init,
                "prune_mode": self.prune_mode,
                "growth_mode": self.growth_mode,
                "redistribution_mode": self.redistribution_mode,
                "dense_gradients": self.dense_gradients,
                "keep_grown_momentum": self.keep_grown_momentum,
                "seed": self.seed,
            },
        }
        for observer in self.observers:
            if observer.state_key is not None:
                state[observer.state_key] = observer.state_dict()
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks and counters saved by `state_dict()`; masked weights are zeroed again.

        :param state: what `state_dict()` returned (possibly after a save and a weights-only load)
        """
        if not self._initialised:
            raise SparseLearningError("call add_module(model) before load_state_dict()")
        masks = state.get("masks") if isinstance(state, dict) else None
        if not isinstance(masks, dict):
            raise SparseLearningError("not a Masking state: no 'masks' entry")
        if set(masks) != set(self.records):
            raise SparseLearningError(
                f"saved masks are for layers {sorted(masks)}, this model masks {sorted(self.records)}"
            )
        for name, saved in masks.items():
            expected = tuple(self.records[name].parameter.shape)
            if not isinstance(saved, torch.Tensor) or tuple(saved.shape) != expected:
                got = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
                raise SparseLearningError(f"saved mask for {name!r} has shape {got}, the weight has {expected}")
        checked = {name: as_boolean_mask(saved, f"saved mask for {name!r}") for name, saved in masks.items()}
        with self._whole_tensors():
            self._restore(state, checked)

    def _restore(self, state: dict[str, Any], checked: dict[str, torch.Tensor]) -> None:
        for name, saved in checked.items():
            self.records[name].mask = saved.to(device=self.records[name].parameter.device).clone()
        self.mask_step = int(state["mask_step"])
        self.baseline_nonzero = int(state["baseline_nonzero"])
        self.total_params = int(state["total_params"])
        self.dense_layers = set(state.get("dense_layers", []))
        self.name2prune_rate = dict(state.get("name2prune_rate", {}))
        self._stats.load_state_dict(state["stats"])
        self._checked_versions = None
        if state.get("decay") is not None and self.prune_rate_decay is not None:
            self.prune_rate_decay.load_state_dict(state["decay"])
        self._refresh()
        self.apply_mask()
        if not self.dense_gradients:
            self.reset_momentum()
        for observer in self.observers:
            saved_state = state.get(observer.state_key) if observer.state_key is not None else None
            observer.after_restore(self.mask_dict, self.mask_step, saved_state)

    def __repr__(self) -> str:
        return (
            f"Masking(layers={len(self.records)}, density={self._stats.total_density:.4f} of target {self.density}, "
            f"sparse_init={self.sparse_init!r}, prune_mode={self.prune_mode!r}, growth_mode={self.growth_mode!r}, "
            f"redistribution_mode={self.redistribution_mode!r}, mask_step={self.mask_step})"
        )
