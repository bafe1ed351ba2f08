"""Checks a run's configuration before any work starts, and derives the step counts the run uses.

Every refusal is one line naming the key, the value and what is allowed, raised as `SparseLearningError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from sparselearning import method_table
from sparselearning.errors import (
    SparseLearningError,
    check_choice,
    check_density,
    check_fraction,
    check_positive_int,
)
from sparselearning.funcs.grow import registry as grow_registry
from sparselearning.funcs.init_scheme import registry as init_registry
from sparselearning.funcs.prune import registry as prune_registry
from sparselearning.funcs.redistribute import registry as redistribute_registry

# The methods, what each one needs and its defaults: `sparselearning.method_table` (`masking=<name>`).
MIXED_PRECISION = ("false", "off", "true", "bf16", "fp16")


@dataclass(frozen=True)
class Schedule:
    """Step counts of a run: every number the loop and the mask schedule need."""

    epochs: int
    steps_per_epoch: int
    total_steps: int
    update_frequency: int | None
    start_when: int
    end_when: int | None


def option(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """`cfg.key`, or `default` when the key is absent or null."""
    value = OmegaConf.select(cfg, key, default=None)
    return default if value is None else value


def _number(value: Any, name: str, minimum: float, inclusive: bool = True, maximum: float | None = None) -> float:
    """A finite number at or above (or strictly above) `minimum`, and at most `maximum`, else one clear error."""
    bound = ">=" if inclusive else ">"
    refusal = SparseLearningError(f"{name} must be a number {bound} {minimum:g}, got {value!r}")
    if isinstance(value, bool):
        raise refusal
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise refusal from None
    if not math.isfinite(number) or number < minimum or (not inclusive and number == minimum):
        raise refusal
    if maximum is not None and number > maximum:
        raise SparseLearningError(f"{name} must be a number <= {maximum:g}, got {value!r}")
    return number


def _whole(value: Any, name: str, minimum: int) -> int:
    """A whole number (an int, not a bool or float) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SparseLearningError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _boolean(value: Any, name: str) -> bool:
    """true or false, nothing else (`resume=maybe` and `resume=no` are refused, not read as true)."""
    if not isinstance(value, bool):
        raise SparseLearningError(f"{name} must be true or false, got {value!r}")
    return value


# Largest learning rate accepted: beyond it every step overflows (1e40 ended in a traceback).
MAX_LR = 100.0
BOOLEAN_KEYS = ("resume", "progress", "plots", "verify_sync")


def _check_optimizer(optimizer: DictConfig) -> None:
    check_choice("optimizer", optimizer.name, ("SGD", "Adam"))
    check_positive_int(optimizer.epochs, "optimizer.epochs")
    check_positive_int(optimizer.training_multiplier, "optimizer.training_multiplier")
    _number(optimizer.lr, "optimizer.lr", minimum=0.0, inclusive=False, maximum=MAX_LR)
    bounded = {"weight_decay": 1.0, "label_smoothing": 1.0, "decay_factor": None}
    for key, maximum in bounded.items():
        if option(optimizer, key) is not None:
            _number(optimizer[key], f"optimizer.{key}", minimum=0.0, maximum=maximum)
    if option(optimizer, "warmup_steps") is not None:
        _whole(optimizer.warmup_steps, "optimizer.warmup_steps", 0)
    if option(optimizer, "decay_frequency") is not None:
        _whole(optimizer.decay_frequency, "optimizer.decay_frequency", 1)
    if optimizer.name == "SGD":
        momentum = _number(optimizer.momentum, "optimizer.momentum", minimum=0.0, maximum=1.0)
        nesterov = _boolean(optimizer.nesterov, "optimizer.nesterov")
        if nesterov and momentum == 0:
            raise SparseLearningError(
                "optimizer.nesterov=true needs optimizer.momentum > 0; set optimizer.nesterov=false for plain SGD"
            )
    else:
        betas = option(optimizer, "betas", [0.9, 0.999])
        if not isinstance(betas, (list, tuple, ListConfig)) or len(betas) != 2:
            raise SparseLearningError(f"optimizer.betas must be two numbers in [0, 1), got {betas!r}")
        for beta in betas:
            if _number(beta, "optimizer.betas", minimum=0.0, maximum=1.0) == 1.0:
                raise SparseLearningError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)!r}")
        _number(option(optimizer, "eps", 1e-8), "optimizer.eps", minimum=0.0, inclusive=False)


def _check_masking(masking: DictConfig) -> None:
    method = method_table.get(masking.name, "masking")
    name = method.name
    if method.uses_density:
        check_density(masking.density, "masking.density")
    if method.from_saved_masks and OmegaConf.is_missing(masking, "lottery_mask_path"):
        raise SparseLearningError(
            f"masking={name} needs masking.lottery_mask_path: a finished run's directory or checkpoints/last.pt"
        )
    for key, registry in (
        ("sparse_init", init_registry),
        ("growth_mode", grow_registry),
        ("prune_mode", prune_registry),
        ("redistribution_mode", redistribute_registry),
    ):
        if option(masking, key) is not None:
            check_choice(f"masking.{key}", masking[key], registry)
    method_table.check_combination(
        method,
        decay_schedule=option(masking, "decay_schedule"),
        growth_mode=option(masking, "growth_mode"),
        prefix="masking.",
    )
    if option(masking, "prune_rate") is not None:
        check_fraction(masking.prune_rate, "masking.prune_rate (drop fraction)")
    if option(masking, "apply_when") is not None:
        check_choice("masking.apply_when", masking.apply_when, ("step_end", "epoch_end"))
    if method.masks_change:
        check_positive_int(masking.interval, "masking.interval (update interval)")
    for key in ("start_when", "end_when"):
        if option(masking, key) is not None:
            _whole(masking[key], f"masking.{key}", 0)
    for key in ("shuffle", "dense_gradients", "low_memory", "keep_grown_momentum"):
        if option(masking, key) is not None:
            _boolean(masking[key], f"masking.{key}")


def _check_dataset(dataset: DictConfig) -> None:
    check_positive_int(dataset.batch_size, "dataset.batch_size")
    if option(dataset, "test_batch_size") is not None:
        check_positive_int(dataset.test_batch_size, "dataset.test_batch_size")
    if option(dataset, "val_fraction") is not None:
        _number(dataset.val_fraction, "dataset.val_fraction", minimum=0.0, inclusive=False, maximum=0.9)
    if option(dataset, "augment") is not None:
        _boolean(dataset.augment, "dataset.augment")


def check_config(cfg: DictConfig) -> None:
    """Refuse bad settings before anything is loaded or written."""
    _check_masking(cfg.masking)
    _check_optimizer(cfg.optimizer)
    _check_dataset(cfg.dataset)
    check_positive_int(cfg.log_interval, "log_interval")
    check_positive_int(option(cfg, "val_interval", 1), "val_interval")
    _number(option(cfg, "distributed_timeout_s", 300), "distributed_timeout_s", minimum=1.0)
    for key in BOOLEAN_KEYS:
        if option(cfg, key) is not None:
            _boolean(cfg[key], key)
    check_choice("device", str(cfg.device), ("auto", "cpu", "cuda"))
    mixed = option(cfg, "mixed_precision", False)
    if mixed is not False and str(mixed).lower() not in MIXED_PRECISION:
        raise SparseLearningError(f"mixed_precision must be false, true, bf16 or fp16, got {mixed!r}")
    channels_last = option(cfg, "channels_last", "auto")
    if channels_last != "auto" and not isinstance(channels_last, bool):
        raise SparseLearningError(f"channels_last must be auto, true or false, got {channels_last!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise SparseLearningError(f"seed must be a whole number >= 0, got {cfg.seed!r}")


def schedule_for(cfg: DictConfig, steps_per_epoch: int) -> Schedule:
    """Total steps, and when masks may change: `end_when` defaults to 75% of the run's steps."""
    epochs = int(cfg.optimizer.epochs) * int(cfg.optimizer.training_multiplier)
    total = epochs * steps_per_epoch
    masking = cfg.masking
    method = method_table.get(masking.name, "masking")
    if not method.masks_change:
        return Schedule(epochs, steps_per_epoch, total, None, 0, None)
    defaults = method.cli_defaults
    interval = int(masking.interval)
    per_epoch = option(masking, "apply_when", "epoch_end" if defaults.per_epoch else "step_end") == "epoch_end"
    frequency = interval * steps_per_epoch if per_epoch else interval
    end_when = option(masking, "end_when")
    end_when = int(method.end_fraction * total) if end_when is None else int(end_when)
    if not 0 < end_when <= total:
        raise SparseLearningError(f"masking.end_when must be in 1..{total} (the run's steps), got {masking.end_when}")
    default_start = math.ceil(defaults.start_fraction * total)
    start_when = int(option(masking, "start_when", default_start))
    if not 0 <= start_when < end_when:
        raise SparseLearningError(f"masking.start_when must be in 0..{end_when - 1}, got {start_when}")
    return Schedule(epochs, steps_per_epoch, total, frequency, start_when, end_when)
