"""Random generators keyed by (seed, step, layer).

Every random decision (initial masks, SET growth, shuffled lottery masks) draws from a CPU generator whose
seed is a hash of where the decision happens, never from the global random state. The same command therefore
draws the same masks on every process, every device and every resume.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def derive_seed(*keys: int) -> int:
    """Mix integer keys into one 63-bit seed; different key tuples give unrelated seeds."""
    state = 0x5EED
    for key in keys:
        state = _splitmix64(state ^ (int(key) & _MASK64))
    return state & ((1 << 63) - 1)


def generator_for(seed: int, step: int, layer: int, purpose: int = 0) -> torch.Generator:
    """A fresh CPU generator for one decision: (run seed, mask step, layer index, purpose)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(seed, step, layer, purpose))
    return generator
