"""One exception type for every bad input, so callers (and the CLI) can report it in one line.

`SparseLearningError` subclasses `ValueError`, so code that already catches `ValueError` keeps working.
The commands end on one with `print_failure`: one `error: ...` line on stderr and exit status 2.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable

#: Set (to anything but the empty string) to see the traceback instead of the one-line message.
TRACEBACK_VARIABLE = "SPARSELEARNING_TRACEBACK"
#: The longest first line of a message that `first_line` returns by default.
FIRST_LINE_LIMIT = 300


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


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) folded into one space, and no space at either end."""
    return " ".join(text.split())


def first_line(error: BaseException, limit: int | None = FIRST_LINE_LIMIT, text: str | None = None) -> str:
    """The first line of an error's message, or its type name when the message is blank: what a one-line
    message quotes of an error raised by other code (torch, YAML, the OS), whose messages can span pages.

    :param limit: the most characters returned; a longer line is cut and ends in "...". None: no limit
    :param text: the message to use instead of `str(error)` (an `OSError`'s `strerror`, say)
    """
    lines = str(error if text is None else text).strip().splitlines()
    line = lines[0].rstrip() if lines else type(error).__name__
    if limit is not None and len(line) > limit:
        return f"{line[: max(0, limit - 3)]}..."
    return line


def print_failure(message: object, status: int = 2, prefix: str = "error") -> int:
    """End a command on a failure: print `<prefix>: <message>` on stderr as one line and return `status`,
    the exit status (2 for bad input). Call it while handling the exception: with `SPARSELEARNING_TRACEBACK`
    set, that exception is raised again instead, with its traceback."""
    if os.environ.get(TRACEBACK_VARIABLE) and sys.exc_info()[1] is not None:
        raise  # the exception the caller is handling, traceback and all
    print(f"{prefix}: {one_line(str(message))}", file=sys.stderr)
    return status
