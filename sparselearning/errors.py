"""One exception type for every bad input, so callers (and the CLI) can report it in one line.

`SparseLearningError` subclasses `ValueError`, so code that already catches `ValueError` keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class SparseLearningError(ValueError):
    """A bad setting or file: the message names the value and what is allowed."""


class SparseLearningWarning(UserWarning):
    """A run that works but may not be what its user meant (weights left dense, steps past the planned end)."""


def check_choice(kind: str, value: object, allowed: Iterable[str]) -> str:
    """Return `value` if it is one of `allowed`, else raise naming every allowed value."""
    options = list(allowed)
    if value not in options:
        raise SparseLearningError(f"unknown {kind} {value!r}; allowed: {', '.join(options)}")
    return value


def check_density(value: float, name: str = "density") -> float:
    """Densities live in (0, 1]; NaN, 0 and anything above 1 are refused."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SparseLearningError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if math.isnan(number) or not 0.0 < number <= 1.0:
        raise SparseLearningError(f"{name} must be in (0, 1], got {value!r}")
    return number


def check_fraction(value: float, name: str) -> float:
    """Rates such as the drop fraction live in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SparseLearningError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise SparseLearningError(f"{name} must be in [0, 1], got {value!r}")
    return number


def check_positive_int(value: int, name: str) -> int:
    """Step counts and intervals are whole numbers of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SparseLearningError(f"{name} must be a whole number >= 1, got {value!r}")
    return value
