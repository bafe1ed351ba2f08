"""The one table of named sparse-training methods, read by `sparselearning.methods` and by `sparselearning train`.

A method is data, as in jaxpruner's algorithm registry: which weights an update drops (`prune_mode`), where it
grows them back (`growth_mode`), how layers share the regrowth (`redistribution_mode`), whether gradients stay
dense, whether and when masks change (`kind`), the drop fraction and its schedule (`decay_schedule`, a key of
`sparselearning.funcs.decay.registry`), the initial masks, whether they come from a saved run, and how its
training FLOPs are counted. `methods.build(name, model, optimizer)` and `sparselearning train masking=<name>`
both build from the entry; the files of `conf/masking/` are entries' command-line form (`cli_config`), and a
test keeps them equal.

Adding a method is one `register(Method(...))`, after registering any new rule function in the `funcs`
registries. A method without a YAML file of its own becomes a `masking=<name>` option of the command line
through Hydra's ConfigStore, so it is usable wherever the registering module was imported first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sparselearning.counting.training import METHOD_KINDS
from sparselearning.errors import SparseLearningError, check_choice, check_density, check_fraction
from sparselearning.funcs import decay as decay_funcs
from sparselearning.funcs import grow, init_scheme, prune, redistribute
from sparselearning.funcs.n_m import SPARSE_REFINED_DECAY

DENSE = "dense"  # no masks: every weight of the model trains
STATIC = "static"  # masks fixed at the start
DYNAMIC = "dynamic"  # drop and regrow every interval until end_when
PRUNING = "pruning"  # drop only, along a target-sparsity schedule
NM = "n:m"  # N of every M consecutive inputs kept by |w|, recomputed every step; dense weights train (SR-STE)
KINDS = (DENSE, STATIC, DYNAMIC, PRUNING, NM)
# What a kind's decay schedule computes: a drop fraction per update ("current") or a target sparsity
# ("cumulative"), the `mode` of a `sparselearning.funcs.decay.Decay`.
DECAY_MODES = {DYNAMIC: "current", PRUNING: "cumulative"}
_DECAY_PURPOSE = {"current": "anneals a drop fraction", "cumulative": "follows a target sparsity"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
CONFIG_GROUP = "masking"


@dataclass(frozen=True)
class Defaults:
    """What one interface, the Python builders or the command line, uses when its caller says nothing.

    :param density: active fraction of the masked weights (Pruning: the final one); None where the density
        is not a setting (masks from a saved run; Small-Dense in Python, whose caller narrows the model)
    :param sparse_init: initial masks, a key of `sparselearning.funcs.init_scheme.registry`
    :param interval: steps between mask updates (epochs where `per_epoch`)
    :param per_epoch: the command line's `apply_when: epoch_end`
    :param start_fraction: when masks may first change, as a fraction of the run's steps
    """

    density: float | None = 0.1
    sparse_init: str = "random"
    interval: int = 100
    per_epoch: bool = False
    start_fraction: float = 0.0


@dataclass(frozen=True)
class Method:
    """One named method: everything `methods.build` and `sparselearning train` need to know about it.

    :param name: the `masking=` option and `methods.build` name
    :param summary: one line: what it does (the YAML file's comment, the docs)
    :param kind: `dense`, `static`, `dynamic` (drop and grow) or `pruning` (drop only)
    :param flops_kind: how training FLOPs are counted, a kind of `counting.training.training_flops_fraction`
    :param drop_fraction: dynamic methods: the initial drop fraction `a` (the CLI's `prune_rate`)
    :param decay_schedule: dynamic and pruning methods: a key of `sparselearning.funcs.decay.registry`
    :param end_fraction: masks stop changing after this fraction of the run's steps
    :param from_saved_masks: the initial masks are a finished run's (`lottery_mask_path`)
    :param narrows_model: the command line narrows its registry models by sqrt(density) (Small-Dense)
    :param python: the Python builders' defaults
    :param cli: the command line's defaults; None: the same as `python`
    :param cli_reason: why `cli` differs from `python` (required exactly when it does)
    :param builder: the function of `sparselearning.methods` that builds it under the paper's name
    :param n_m: N:M methods: the default `(n, m)`
    :param sparse_refined_decay: N:M methods: the default lambda_w of SR-STE's sparse-refined term
    """

    name: str
    summary: str
    kind: str
    flops_kind: str
    prune_mode: str = "magnitude"
    growth_mode: str = "none"
    redistribution_mode: str = "none"
    dense_gradients: bool = False
    drop_fraction: float | None = None
    decay_schedule: str | None = None
    end_fraction: float = 0.75
    from_saved_masks: bool = False
    narrows_model: bool = False
    python: Defaults = field(default_factory=Defaults)
    cli: Defaults | None = None
    cli_reason: str = ""
    builder: str | None = None
    n_m: tuple[int, int] | None = None
    sparse_refined_decay: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SparseLearningError(
                f"method name {self.name!r} is not usable as masking=<name>; use letters, digits and _"
            )
        check_choice(f"kind of method {self.name}", self.kind, KINDS)

        check_choice(f"flops_kind of method {self.name}", self.flops_kind, METHOD_KINDS)
        if self.masks_change != (self.decay_schedule is not None):
            needs = "needs a decay_schedule" if self.masks_change else "never changes its masks: no decay_schedule"
            raise SparseLearningError(f"method {self.name} ({self.kind}) {needs}")
        if (self.kind == DYNAMIC) != (self.drop_fraction is not None):
            needs = "needs a drop_fraction" if self.kind == DYNAMIC else "drops no fraction: no drop_fraction"
            raise SparseLearningError(f"method {self.name} ({self.kind}) {needs}")
        if self.drop_fraction is not None:
            check_fraction(self.drop_fraction, f"drop_fraction of method {self.name}")
        check_fraction(self.end_fraction, f"end_fraction of method {self.name}")
        if self.from_saved_masks and self.kind not in (STATIC, DYNAMIC):
            raise SparseLearningError(f"method {self.name} ({self.kind}) cannot start from saved masks")
        for side in (self.python, self.cli_defaults):
            if side.density is not None:
                check_density(side.density, f"density of method {self.name}")
        if (self.kind == NM) != (self.n_m is not None and self.sparse_refined_decay is not None):
            needs = "needs n_m and sparse_refined_decay" if self.kind == NM else "is not N:M: no n_m"
            raise SparseLearningError(f"method {self.name} ({self.kind}) {needs}")
        if (self.cli_defaults != self.python) != bool(self.cli_reason):
            fix = "say why its command-line defaults differ (cli_reason)" if not self.cli_reason else "drop cli_reason"
            raise SparseLearningError(f"method {self.name}: {fix}; cli_reason is for defaults that differ")

    @property
    def masks_change(self) -> bool:
        """Whether masks change during training (dynamic and pruning methods), on a schedule."""
        return self.kind in (DYNAMIC, PRUNING)

    @property
    def cli_defaults(self) -> Defaults:
        """The command line's defaults (the Python ones unless the entry says otherwise)."""
        return self.python if self.cli is None else self.cli

    @property
    def uses_density(self) -> bool:
        """Whether `density` is a setting of the method (not for Dense, nor for masks from a saved run)."""
        return not self.from_saved_masks and self.kind != NM and (self.kind != DENSE or self.narrows_model)


def saved_masks_init(shuffle: bool) -> str:
    """The initial-mask scheme of a method whose masks come from a saved run."""
    return "lottery-ticket-dist" if shuffle else "lottery-ticket"


def decay_class(method: Method, schedule: str, key: str = "decay_schedule") -> type[decay_funcs.Decay]:
    """The class of `sparselearning.funcs.decay.registry[schedule]`, if it can drive `method`, else one line
    saying what does (RigL with `magnitude-prune`, a target sparsity, is refused, not run with a cosine).

    :param method: the method
    :param schedule: a key of the decay registry
    :param key: the setting's name in messages (`masking.decay_schedule` on the command line)
    """
    registry = decay_funcs.registry
    if not method.masks_change:
        raise SparseLearningError(f"{key} {schedule!r} does not apply to {method.name}: its masks never change")
    chosen = registry[check_choice(key, schedule, registry)]
    needed = DECAY_MODES[method.kind]
    if getattr(chosen, "mode", "current") != needed:
        fitting = [name for name, cls in registry.items() if getattr(cls, "mode", "current") == needed]
        raise SparseLearningError(
            f"{key} {schedule!r} does not fit {method.name}, which {_DECAY_PURPOSE[needed]}; "
            f"allowed: {', '.join(fitting)}"
        )
    return chosen


def check_combination(method: Method, *, decay_schedule: str | None, growth_mode: str | None, prefix: str = "") -> None:
    """Refuse, in one line, settings that do not fit `method` (instead of ignoring them or falling back).

    :param method: the method
    :param decay_schedule: the chosen decay schedule, or None for the method's own
    :param growth_mode: the chosen growth mode, or None for the method's own
    :param prefix: how settings are named in messages (`masking.` on the command line)
    """
    if decay_schedule is not None:
        decay_class(method, decay_schedule, f"{prefix}decay_schedule")
    if method.kind == PRUNING and growth_mode not in (None, "none"):
        raise SparseLearningError(
            f"{prefix}growth_mode {growth_mode!r} does not fit {method.name}, which only removes weights; allowed: none"
        )


def cli_config(method: Method) -> dict[str, Any]:
    """The method's `masking` group on the command line: its YAML file's content, or the node registered for
    it in Hydra's ConfigStore when it ships no file. Each kind lists the keys its build reads."""
    side = method.cli_defaults
    config: dict[str, Any] = {"name": method.name, "density": side.density}
    if method.kind == DENSE:
        return config
    if method.kind == NM:
        assert method.n_m is not None  # checked by Method
        config["n"], config["m"] = method.n_m
        config["sparse_refined_decay"] = method.sparse_refined_decay
        return config
    if method.from_saved_masks:
        config["lottery_mask_path"] = "???"  # Hydra's mark for a value the user must give
    if method.kind == STATIC:
        if method.from_saved_masks:
            config["shuffle"] = False
        else:
            config["sparse_init"] = side.sparse_init
        config["low_memory"] = False
        return config
    if method.kind == DYNAMIC:
        config["sparse_init"] = saved_masks_init(False) if method.from_saved_masks else side.sparse_init
        config["growth_mode"] = method.growth_mode
    config["prune_mode"] = method.prune_mode
    if method.kind == DYNAMIC:
        config["redistribution_mode"] = method.redistribution_mode
    config["dense_gradients"] = method.dense_gradients
    if method.kind == DYNAMIC and method.dense_gradients:
        config["keep_grown_momentum"] = False
    if method.kind == DYNAMIC:
        config["prune_rate"] = method.drop_fraction
    config["decay_schedule"] = method.decay_schedule
    config["apply_when"] = "epoch_end" if side.per_epoch else "step_end"
    config["interval"] = side.interval
    config["start_when"] = 0 if side.start_fraction == 0 else None  # null: start_fraction of the run's steps
    config["end_when"] = None  # null: end_fraction of the run's steps
    config["low_memory"] = False
    return config


def _ships_yaml(name: str) -> bool:
    return (resources.files("sparselearning") / "conf" / CONFIG_GROUP / f"{name}.yaml").is_file()


def _check_rules(method: Method) -> None:
    """The method's rules are registered functions (register new rules before the method)."""

    checks = [
        ("prune_mode", method.prune_mode, prune.registry),
        ("growth_mode", method.growth_mode, grow.registry),
        ("redistribution_mode", method.redistribution_mode, redistribute.registry),
        ("sparse_init", method.python.sparse_init, init_scheme.registry),
        ("sparse_init", method.cli_defaults.sparse_init, init_scheme.registry),
    ]
    for key, value, registry in checks:
        check_choice(f"{key} of method {method.name}", value, registry)
    if method.decay_schedule is not None:
        check_choice(f"decay_schedule of method {method.name}", method.decay_schedule, decay_funcs.registry)
        decay_class(method, method.decay_schedule, f"decay_schedule of method {method.name}")


table: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method` to the table: `methods.build(method.name, ...)` and `masking=<name>` then build it.

    :param method: the new entry; its rule functions must be registered already
    :return: the entry
    """
    if not isinstance(method, Method):
        raise SparseLearningError(f"register() takes a Method, got {type(method).__name__}")
    if method.name in table:
        raise SparseLearningError(f"a method named {method.name!r} is already registered; pick another name")
    _check_rules(method)
    table[method.name] = method
    if not _ships_yaml(method.name):
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(group=CONFIG_GROUP, name=method.name, node=cli_config(method))
    return method


def unregister(name: str) -> None:
    """Remove a method added with `register` (the built-in ones stay).

    :param name: its name
    """
    if name in BUILT_IN:
        raise SparseLearningError(f"{name!r} is built in and cannot be unregistered")
    check_choice("method", name, table)
    del table[name]
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().repo.get(CONFIG_GROUP, {}).pop(f"{name}.yaml", None)


def get(name: str, kind: str = "method") -> Method:
    """The entry of `name`, or one line listing every method.

    :param name: a method name
    :param kind: how the setting is named in the message (`masking` on the command line)
    """
    return table[check_choice(kind, name, table)]


# The command line's defaults are its MNIST LeNet-300-100 recipe: 95% sparsity; the builders keep the papers'
# density of 0.1, a common choice in their comparisons.
_RECIPE = "the command line's default run is its MNIST LeNet-300-100 recipe at 95% sparsity"
_CLI_DENSITY = 0.05

for _method in (
    Method(
        "Dense",
        "Dense training through the same loop (no masks).",
        DENSE,
        "dense",
        python=Defaults(density=1.0),
        builder="dense",
    ),
    Method(
        "Small_Dense",
        "Small-Dense: a dense model with every layer width times sqrt(density).",
        DENSE,
        "dense",
        narrows_model=True,
        python=Defaults(density=None),
        cli=Defaults(density=0.2),
        cli_reason="in Python you narrow the model yourself (small_dense_width); the command line narrows its "
        "models by sqrt(masking.density), 0.2 by default",
        builder="small_dense",
    ),
    Method(
        "Static",
        "Static sparse: the initial mask never changes.",
        STATIC,
        "static",
        cli=Defaults(density=_CLI_DENSITY),
        cli_reason=_RECIPE,
        builder="static",
    ),
    Method(
        "SET",
        "SET (Mocanu et al. 2018): drop the smallest |w|, regrow as many at random inactive positions.",
        DYNAMIC,
        "set",
        growth_mode="random",
        drop_fraction=0.3,
        decay_schedule="cosine",
        cli=Defaults(density=_CLI_DENSITY),
        cli_reason=_RECIPE,
        builder="set_",
    ),
    Method(
        "SNFS",
        "SNFS / sparse momentum (Dettmers & Zettlemoyer 2019): drop the smallest |w|, share the freed budget by "
        "mean |momentum| per layer, regrow at the largest |momentum|; momentum stays dense.",
        DYNAMIC,
        "snfs",
        growth_mode="momentum",
        redistribution_mode="momentum",
        dense_gradients=True,
        drop_fraction=0.5,
        decay_schedule="cosine",
        cli=Defaults(density=_CLI_DENSITY, interval=1, per_epoch=True),
        cli_reason=f"{_RECIPE}; it updates once per epoch, as the paper does (a Python builder does not know "
        "the epoch length, so it updates every 100 steps)",
        builder="snfs",
    ),
    Method(
        "RigL",
        "RigL (Evci et al. 2020): drop the smallest |w|, regrow as many at the largest |gradient|.",
        DYNAMIC,
        "rigl",
        growth_mode="absolute-gradient",
        drop_fraction=0.3,
        decay_schedule="cosine",
        cli=Defaults(density=_CLI_DENSITY, sparse_init="erdos-renyi-kernel"),
        cli_reason=f"{_RECIPE}, with ERK layer densities (RigL (ERK), the paper's best variant)",
        builder="rigl",
    ),
    Method(
        "SRigL",
        "SRigL (Lasby et al. 2024): RigL under a constant fan-in (every neuron keeps the same number of active "
        "inputs), dropping by |w| and regrowing by |gradient| within each neuron; neurons with too few salient "
        "weights are ablated and their budget shared by the rest of the layer.",
        DYNAMIC,
        "rigl",
        prune_mode="srigl",
        growth_mode="srigl",
        drop_fraction=0.3,
        decay_schedule="cosine",
        python=Defaults(sparse_init="fan-in-erdos-renyi-kernel"),
        cli=Defaults(density=_CLI_DENSITY, sparse_init="fan-in-erdos-renyi-kernel"),
        cli_reason=_RECIPE,
        builder="srigl",
    ),
    Method(
        "Struct_RigL",
        "Channel-wise RigL: whole kernels dropped by mean |w| and grown by mean |gradient| (convolutions only).",
        DYNAMIC,
        "rigl",
        prune_mode="struct-magnitude-mean",
        growth_mode="struct-absolute-gradient-mean",
        drop_fraction=0.3,
        decay_schedule="cosine",
        python=Defaults(sparse_init="struct-erdos-renyi-kernel"),
        builder="struct_rigl",
    ),
    Method(
        "RigL_reinit",
        "RigL started from the final masks of another run, on freshly initialised weights.",
        DYNAMIC,
        "rigl",
        growth_mode="absolute-gradient",
        drop_fraction=0.3,
        decay_schedule="cosine",
        from_saved_masks=True,
        python=Defaults(density=None, sparse_init="lottery-ticket"),
        builder="rigl_reinit",
    ),
    Method(
        "Pruning",
        "Gradual magnitude pruning (Zhu & Gupta 2018): dense to `density` along a cubic schedule, by one global "
        "magnitude threshold every `interval` steps.",
        PRUNING,
        "pruning",
        prune_mode="global-magnitude",
        decay_schedule="magnitude-prune",
        cli=Defaults(density=_CLI_DENSITY, start_fraction=0.1),
        cli_reason=f"{_RECIPE}; it starts pruning after 10% of the run, as Zhu & Gupta train dense first (a "
        "Python builder starts at step 0 unless given start_fraction)",
        builder="pruning",
    ),
    Method(
        "Lottery",
        "Lottery ticket restart: a finished run's final masks on freshly initialised weights (same seed), static.",
        STATIC,
        "static",
        from_saved_masks=True,
        python=Defaults(density=None, sparse_init="lottery-ticket"),
        builder="lottery",
    ),
    Method(
        "NM",
        "N:M sparse training by SR-STE (Zhou et al. 2021): dense weights train; every step, the N largest |w| of "
        "every M consecutive inputs make the forward pass, and the gradient reaches the dense weights straight "
        "through, plus a decay lambda_w * (1 - mask) * w on the weights the mask removes.",
        NM,
        "snfs",  # the same cost: sparse forward and input gradient, dense weight gradient (2 f_S + f_D)
        python=Defaults(density=None),
        n_m=(2, 4),
        sparse_refined_decay=SPARSE_REFINED_DECAY,
        builder="nm",
    ),
):
    register(_method)
BUILT_IN = tuple(table)  # the methods shipped with the package, in the table's order
