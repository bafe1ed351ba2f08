"""Implements decay functions (cosine, linear, iterative pruning).

A decay object answers one question per training step: what fraction of a layer's active weights should the
next mask update drop (`get_dr`)? `Masking` calls `step(t)` with the global step `t` every iteration, so all
schedules are closed forms of `t` and survive a resume bit-exactly.
"""

from __future__ import annotations

import math
from typing import Any

from sparselearning.errors import SparseLearningError, check_fraction, check_positive_int


class Decay:
    """Template decay class. `mode` is "current" (a rate per update) or "cumulative" (a sparsity target)."""

    mode: str = "current"

    def step(self, step: int = -1) -> None:
        """Move the schedule to global step `step` (or one step on).

        :param step: the global training step, or -1
        """
        raise NotImplementedError

    def get_dr(self) -> float:
        """The current value: a drop fraction, or for pruning the share of weights still to remove."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Every attribute, so a resumed run continues the schedule exactly."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned.

        :param state: attribute values
        """
        for key, value in state.items():
            setattr(self, key, value)


class CosineDecay(Decay):
    """Decays a pruning rate according to a cosine schedule (RigL).

    The closed form of PyTorch's CosineAnnealingLR:
    `a_t = eta_min + (prune_rate - eta_min)(1 + cos(pi t / T_max)) / 2`, held at `eta_min` after `T_max`.

    :param prune_rate: alpha described in RigL's paper, initial prune rate (default 0.3)
    :param T_max: max mask-update steps (default 1000)
    :param eta_min: final prune rate (default 0.0)
    :param last_epoch: epoch to reset annealing. If -1, doesn't reset (default -1).
    """

    def __init__(self, prune_rate: float = 0.3, T_max: int = 1000, eta_min: float = 0.0, last_epoch: int = -1):
        self.prune_rate = check_fraction(prune_rate, "prune_rate")
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = check_fraction(eta_min, "eta_min")
        self._step = max(0, last_epoch)

    def step(self, step: int = -1) -> None:
        """Move to global step `step`, or one step on when called without it.

        :param step: the global training step, or -1
        """
        self._step = step if step >= 0 else self._step + 1

    def get_dr(self) -> float:
        """The drop fraction at the current step."""
        t = min(self._step, self.T_max)
        return self.eta_min + (self.prune_rate - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class LinearDecay(Decay):
    """Anneals the pruning rate linearly with each step: `a_t = a - (a / T_max)(t + 1)`, never below 0.

    :param prune_rate: initial prune rate (default 0.3)
    :param T_max: max mask-update steps (default 1000)
    """

    def __init__(self, prune_rate: float = 0.3, T_max: int = 1000):
        self.prune_rate = check_fraction(prune_rate, "prune_rate")
        self.T_max = check_positive_int(T_max, "T_max")
        self._step = -1

    def step(self, step: int = -1) -> None:
        """Move to global step `step`, or one step on when called without it.

        :param step: the global training step, or -1
        """
        self._step = step if step >= 0 else self._step + 1

    def get_dr(self) -> float:
        """The drop fraction at the current step."""
        if self._step < 0:
            return self.prune_rate
        t = min(self._step + 1, self.T_max)
        return max(0.0, self.prune_rate - self.prune_rate / self.T_max * t)


def pruning_steps(T_start: int, T_max: int, interval: int) -> range:
    """The steps at which a `Masking` with `update_frequency=interval`, `start_when=T_start` and
    `end_when=T_max + 1` updates its masks: the multiples of `interval` in `[max(T_start, 1), T_max]`
    (step 0 never updates: it has no gradient history yet).

    :param T_start: first step at which pruning may happen
    :param T_max: last step at which pruning may happen
    :param interval: steps between pruning updates
    """
    first = interval * math.ceil(max(T_start, 1) / interval)
    return range(first, T_max + 1, interval)


def density_of_sparsity(sparsity: float) -> float:
    """The density a caller meant by `sparsity`: the shortest decimal `d` with `1.0 - d == sparsity`.

    `1.0 - (1.0 - 0.05)` is 0.050000000000000044, not 0.05, and `round(d * total)` at a half-integer
    depends on that last digit; recovering the density as written keeps a pruned network's count equal to
    the `round(density * total)` every other method uses (to the last weight, for densities of up to 15
    significant digits).

    :param sparsity: a fraction in [0, 1]
    """
    complement = 1.0 - sparsity
    for digits in range(1, 18):
        candidate = float(f"{complement:.{digits}g}")
        if 1.0 - candidate == sparsity:
            return candidate
    return complement


class MagnitudePruneDecay(Decay):
    """Anneals according to Zhu and Gupta 2018, "To prune or not to prune".

    Pruning happens at the steps of `pruning_steps(T_start, T_max, interval)`; the last of them, `T_end`, is
    the last step of the schedule. Target sparsity `s(t) = s_f + (s_i - s_f)(1 - (t - T_start)/(T_end -
    T_start))^3` between `T_start` and `T_end` (`s_i` before, `s_f` from `T_end` on), so the final sparsity
    is reached at a step where pruning happens even when `T_max` is not a multiple of `interval`. The rate
    handed to the pruner is the finite difference `max(s(t) - s_now, 0)`: the fraction of the baseline
    weights still to remove at step `t`; `target_nonzero` gives the same target as an exact count.

    :param initial_sparsity: sparsity before `T_start` (default 0.0)
    :param final_sparsity: sparsity reached at the last pruning step (default 0.3)
    :param T_max: last step at which pruning may happen (default 30000)
    :param T_start: step at which pruning starts (default 350)
    :param interval: steps between pruning updates (default 100)
    """

    mode = "cumulative"

    def __init__(
        self,
        initial_sparsity: float = 0.0,
        final_sparsity: float = 0.3,
        T_max: int = 30000,
        T_start: int = 350,
        interval: int = 100,
    ):
        self.initial_sparsity = check_fraction(initial_sparsity, "initial_sparsity")
        self.final_sparsity = check_fraction(final_sparsity, "final_sparsity")
        self.T_max = check_positive_int(T_max, "T_max")
        self.T_start = int(T_start)
        self.interval = check_positive_int(interval, "interval")
        if not 0 <= self.T_start <= self.T_max:
            raise SparseLearningError(f"T_start must be in [0, T_max={T_max}], got {T_start!r}")
        if not pruning_steps(self.T_start, self.T_max, self.interval):
            raise SparseLearningError(
                f"no pruning step: no multiple of interval={interval} lies in [max(T_start, 1), T_max] = "
                f"[{max(self.T_start, 1)}, {T_max}]; use a smaller interval or a wider window"
            )
        self.current_prune_rate = 0.0
        self._step = 0

    @property
    def last_pruning_step(self) -> int:
        """`T_end`: the last step at which pruning happens, where the final sparsity is reached."""
        return pruning_steps(self.T_start, self.T_max, self.interval)[-1]

    def cumulative_sparsity(self, step: int) -> float:
        """The target sparsity s(step).

        :param step: a global training step
        """
        if step < self.T_start:
            return self.initial_sparsity
        end = self.last_pruning_step
        if step >= end:
            return self.final_sparsity
        progress = 1 - (step - self.T_start) / (end - self.T_start)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * progress**3

    def target_nonzero(self, total: int, step: int | None = None) -> int:
        """How many of `total` masked weights the schedule keeps at `step`: `round((1 - s(step)) * total)`,
        so from the last pruning step on exactly `round(density * total)`, as every other method counts.

        :param total: the number of masked weights
        :param step: a global training step (default: the one last passed to `step()`)
        """
        step = self._step - 1 if step is None else step
        return round(density_of_sparsity(self.cumulative_sparsity(step)) * total)

    def step(self, step: int = -1, current_sparsity: float = -1) -> None:
        """Set the rate for `step` given the sparsity reached so far.

        :param step: the global training step (-1: one on from the last)
        :param current_sparsity: the sparsity reached so far (-1: the target one interval earlier)
        """
        if step == -1:
            step = self._step
        if current_sparsity == -1:
            current_sparsity = self.cumulative_sparsity(step - self.interval)
        self.current_prune_rate = max(self.cumulative_sparsity(step) - current_sparsity, 0.0)
        self._step = step + 1

    def get_dr(self) -> float:
        """The share of all masked weights the next update removes."""
        return self.current_prune_rate


registry: dict[str, type[Decay]] = {
    "cosine": CosineDecay,
    "linear": LinearDecay,
    "magnitude-prune": MagnitudePruneDecay,
}
