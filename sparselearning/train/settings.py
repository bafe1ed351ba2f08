"""Checks a run's configuration before any work starts, and derives the step counts the run uses.

Every refusal is one line naming the key, the value and what is allowed, raised as `SparseLearningError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

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

METHODS = ("Dense", "Small_Dense", "Static", "SET", "SNFS", "RigL", "RigL_reinit", "Pruning", "Lottery")
DYNAMIC = ("SET", "SNFS", "RigL", "RigL_reinit")
FROM_SAVED_MASKS = ("Lottery", "RigL_reinit")
DECAYS = ("cosine", "linear", "magnitude-prune")


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


def _number(value: Any, name: str, minimum: float, inclusive: bool) -> float:
    """A finite number at or above (or strictly above) `minimum`, else one clear error."""
    bound = ">=" if inclusive else ">"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SparseLearningError(f"{name} must be a number {bound} {minimum:g}, got {value!r}") from None
    if not math.isfinite(number) or number < minimum or (not inclusive and number == minimum):
        raise SparseLearningError(f"{name} must be a number {bound} {minimum:g}, got {value!r}")
    return number


def check_config(cfg: DictConfig) -> None:
    """Refuse bad settings before anything is loaded or written."""
    masking = cfg.masking
    name = check_choice("masking", masking.name, METHODS)
    if name not in ("Dense",) and name not in FROM_SAVED_MASKS:
        check_density(masking.density, "masking.density")
    if name in FROM_SAVED_MASKS and OmegaConf.is_missing(masking, "lottery_mask_path"):
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
    if option(masking, "decay_schedule") is not None:
        check_choice("masking.decay_schedule", masking.decay_schedule, DECAYS)
    if option(masking, "prune_rate") is not None:
        check_fraction(masking.prune_rate, "masking.prune_rate (drop fraction)")
    if option(masking, "apply_when") is not None:
        check_choice("masking.apply_when", masking.apply_when, ("step_end", "epoch_end"))
    if name in DYNAMIC or name == "Pruning":
        check_positive_int(masking.interval, "masking.interval (update interval)")
    optimizer = cfg.optimizer
    check_choice("optimizer", optimizer.name, ("SGD", "Adam"))
    check_positive_int(optimizer.epochs, "optimizer.epochs")
    check_positive_int(optimizer.training_multiplier, "optimizer.training_multiplier")
    _number(optimizer.lr, "optimizer.lr", minimum=0.0, inclusive=False)
    for key in ("weight_decay", "momentum", "label_smoothing", "decay_factor"):
        if option(optimizer, key) is not None:
            _number(optimizer[key], f"optimizer.{key}", minimum=0.0, inclusive=True)
    check_positive_int(cfg.dataset.batch_size, "dataset.batch_size")
    check_positive_int(cfg.log_interval, "log_interval")
    check_choice("device", str(cfg.device), ("auto", "cpu", "cuda"))
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise SparseLearningError(f"seed must be a whole number >= 0, got {cfg.seed!r}")


def schedule_for(cfg: DictConfig, steps_per_epoch: int) -> Schedule:
    """Total steps, and when masks may change: `end_when` defaults to 75% of the run's steps."""
    epochs = int(cfg.optimizer.epochs) * int(cfg.optimizer.training_multiplier)
    total = epochs * steps_per_epoch
    masking = cfg.masking
    if masking.name not in DYNAMIC and masking.name != "Pruning":
        return Schedule(epochs, steps_per_epoch, total, None, 0, None)
    interval = int(masking.interval)
    per_epoch = option(masking, "apply_when", "step_end") == "epoch_end"
    frequency = interval * steps_per_epoch if per_epoch else interval
    end_when = option(masking, "end_when")
    end_when = int(0.75 * total) if end_when is None else int(end_when)
    if not 0 < end_when <= total:
        raise SparseLearningError(f"masking.end_when must be in 1..{total} (the run's steps), got {masking.end_when}")
    default_start = math.ceil(0.1 * total) if masking.name == "Pruning" else 0
    start_when = int(option(masking, "start_when", default_start))
    if not 0 <= start_when < end_when:
        raise SparseLearningError(f"masking.start_when must be in 0..{end_when - 1}, got {start_when}")
    return Schedule(epochs, steps_per_epoch, total, frequency, start_when, end_when)
