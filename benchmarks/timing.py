"""Side-by-side timing helpers: alternate the contenders, repeat, report medians (this machine is noisy)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable


def time_per_call(function: Callable[[], object], calls: int) -> float:
    """Seconds per call of `function`, over `calls` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def alternating_medians(
    contenders: dict[str, Callable[[], object]], rounds: int, calls: int, seed: int = 0
) -> dict[str, float]:
    """Median seconds per call of each contender, timed round after round in a freshly shuffled order.

    Shuffling stops any contender from always running right after the same other one (caches, clocks).
    """
    order = list(contenders)
    shuffler = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            samples[name].append(time_per_call(contenders[name], calls))
    return {name: statistics.median(values) for name, values in samples.items()}
