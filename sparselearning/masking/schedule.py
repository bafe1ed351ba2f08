"""When masks change, and how the drop fraction decays between changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sparselearning.errors import check_positive_int


class DropSchedule(Protocol):
    """What `Masking` needs of a drop-fraction schedule (the decays of `sparselearning.funcs.decay`)."""

    def step(self, step: int) -> None: ...

    def get_dr(self) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class UpdateSchedule:
    """The steps at which `Masking.step()` updates masks: every `frequency` steps from `start` (and never at step
    0) until `end` (exclusive; None: never stops). `frequency=None` never updates."""

    frequency: int | None = None
    start: int = 0
    end: int | None = None

    def __post_init__(self) -> None:
        if self.frequency is not None:
            object.__setattr__(self, "frequency", check_positive_int(self.frequency, "update_frequency"))
        object.__setattr__(self, "start", int(self.start))
        if self.end is not None:
            object.__setattr__(self, "end", int(self.end))

    def is_update_step(self, step: int) -> bool:
        """Whether the masks change at `step` (0-based count of `step()` calls so far)."""
        if self.frequency is None or step == 0 or step < self.start:
            return False
        if self.end is not None and step >= self.end:
            return False
        return step % self.frequency == 0


def advance_decay(decay: DropSchedule | None, step: int, density: float) -> None:
    """Move the drop-fraction schedule to `step`. A cumulative schedule (gradual pruning) also reads the
    current sparsity, `1 - density`, to know how much is left to prune."""
    if decay is None:
        return
    if getattr(decay, "mode", "current") == "cumulative":
        cumulative_step: Callable[..., None] = decay.step  # (step, current_sparsity), as MagnitudePruneDecay
        cumulative_step(step, 1.0 - density)
    else:
        decay.step(step)
