"""Ways to misuse `Masking` that would otherwise run on silently or fail late: each one becomes one clear line.

- an optimizer without momentum under a momentum-guided growth or redistribution mode (refused when built);
- masked weights made nonzero behind Masking's back, as `optimizer.step()` in place of `masking.step()` does
  (refused at the next mask update or density report);
- an exclude entry that matches no weight (refused, naming the nearest names).

What may be meant but deserves a look (dense weights, steps past the plan) is warned about with `warn_user`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from types import FrameType

import torch

from sparselearning.coverage import closest_names
from sparselearning.errors import SparseLearningError, SparseLearningWarning

# Top-level modules whose frames a warning skips on its way to the user's line.
_LIBRARY_MODULES = frozenset({"sparselearning", "torch"})

# Optimizers whose state holds `exp_avg` and `exp_avg_sq` (read by `Masking.get_momentum_for_weight`).
_ADAM_FAMILY = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam)
# Optimizers that keep a `momentum_buffer` only when their `momentum` setting is above zero.
_MOMENTUM_SETTING = (torch.optim.SGD, torch.optim.RMSprop)


def momentum_problem(optimizer: torch.optim.Optimizer) -> str | None:
    """Why `optimizer` keeps no momentum that momentum growth or redistribution could read, or None if it does."""
    kind = type(optimizer).__name__
    if isinstance(optimizer, _ADAM_FAMILY):
        return None
    if isinstance(optimizer, _MOMENTUM_SETTING) or "momentum" in optimizer.defaults:
        for group in optimizer.param_groups:
            momentum = group.get("momentum", 0)
            if not (isinstance(momentum, (int, float)) and momentum > 0):
                return f"{kind} has momentum={momentum}, so it keeps no momentum buffer"
        return None
    return f"{kind} keeps no momentum buffer Masking can read (SGD or RMSprop with momentum > 0, Adam, AdamW)"


def require_momentum(optimizer: torch.optim.Optimizer, growth_mode: str, redistribution_mode: str) -> None:
    """Refuse at once, instead of at the first mask update, an optimizer that momentum-guided modes cannot use."""
    modes = {"growth_mode": growth_mode, "redistribution_mode": redistribution_mode}
    users = [f"{key}={mode!r}" for key, mode in modes.items() if mode == "momentum"]
    if not users:
        return
    problem = momentum_problem(optimizer)
    if problem is not None:
        raise SparseLearningError(
            f"{' and '.join(users)} {'need' if len(users) > 1 else 'needs'} optimizer momentum, but {problem}; use "
            "SGD(momentum=0.9), Adam or AdamW, or growth_mode='absolute-gradient' and redistribution_mode='none'"
        )


def stray_weights_error(stray: dict[str, int]) -> SparseLearningError:
    """The error for masked weights found nonzero: how many, where, and the fix."""
    total = sum(stray.values())
    worst = max(stray, key=lambda name: stray[name])
    where = f"{stray[worst]:,} in {worst!r}" + (f" and more in {len(stray) - 1} other layers" if len(stray) > 1 else "")
    return SparseLearningError(
        f"nonzero weights at masked positions: {total:,} ({where}); the weights were changed outside Masking, as "
        "optimizer.step() does; call masking.step() instead of optimizer.step() (and masking.apply_mask() after "
        "loading weights)"
    )


def unmatched_entry_error(entry: str, names: Iterable[str], option: str = "exclude") -> SparseLearningError:
    """The error for an exclude, include or density_overrides entry that names no weight, with the nearest names."""
    names = list(names)
    close = closest_names(entry, names)
    hint = f"closest names: {', '.join(close)}" if close else f"weight names look like: {', '.join(names[:3])}"
    never = "; biases, norms and 1-d parameters are never masked" if option == "include" else ""
    what = "masked weight tensor" if option == "density_overrides" else "weight tensor of the model"
    return SparseLearningError(f"{option} entry {entry!r} matches no {what}{never}; {hint}")


def warn_user(message: str) -> None:
    """Warn with `SparseLearningWarning`, attributed to the first line outside this package and torch (whose
    `no_grad` wrappers sit between), i.e. the user's call."""
    frame: FrameType | None = sys._getframe(0)
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] in _LIBRARY_MODULES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, SparseLearningWarning, stacklevel=level)
