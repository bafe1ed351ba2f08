"""Checks a run's configuration before any work starts, and derives the step counts the run uses.

Every refusal is one line naming the key, the value and what is allowed, raised as `SparseLearningError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig

from sparselearning.conf.schema import RunConfig, typed
from sparselearning.errors import SparseLearningError

# The methods, what each one needs and its defaults: `sparselearning.method_table` (`masking=<name>`);
# every other setting: `sparselearning.conf.schema`.


@dataclass(frozen=True)
class Schedule:
    """Step counts of a run: every number the loop and the mask schedule need."""

    epochs: int
    steps_per_epoch: int
    total_steps: int
    update_frequency: int | None
    start_when: int
    end_when: int | None


def check_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """Refuse bad settings before anything is loaded or written; the typed configuration the run reads.

    The keys, defaults and checks are the dataclasses of `sparselearning.conf.schema`.
    """
    return cfg if isinstance(cfg, RunConfig) else typed(cfg)


def schedule_for(cfg: DictConfig | RunConfig, steps_per_epoch: int) -> Schedule:
    """Total steps, and when masks may change: null `end_when` and `start_when` are the method table's
    fractions of the run's steps (75% and, for most methods, 0)."""
    config = check_config(cfg)
    epochs = config.optimizer.epochs * config.optimizer.training_multiplier
    total = epochs * steps_per_epoch
    masking = config.masking
    method = masking.method
    if not method.masks_change:
        return Schedule(epochs, steps_per_epoch, total, None, 0, None)
    defaults = method.cli_defaults
    assert masking.interval is not None  # checked: every method whose masks change has an interval
    apply_when = masking.apply_when or ("epoch_end" if defaults.per_epoch else "step_end")
    frequency = masking.interval * steps_per_epoch if apply_when == "epoch_end" else masking.interval
    end_when = int(method.end_fraction * total) if masking.end_when is None else masking.end_when
    if not 0 < end_when <= total:
        raise SparseLearningError(f"masking.end_when must be in 1..{total} (the run's steps), got {masking.end_when}")
    default_start = math.ceil(defaults.start_fraction * total)
    start_when = default_start if masking.start_when is None else masking.start_when
    if not 0 <= start_when < end_when:
        raise SparseLearningError(f"masking.start_when must be in 0..{end_when - 1}, got {start_when}")
    return Schedule(epochs, steps_per_epoch, total, frequency, start_when, end_when)
