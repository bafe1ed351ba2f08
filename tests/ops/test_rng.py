"""Generators keyed by (seed, step, layer): reproducible and independent."""

from __future__ import annotations

import torch

from sparselearning.ops.rng import derive_seed, generator_for


def test_same_keys_same_stream_different_keys_different_stream() -> None:
    draw = lambda *keys: torch.rand(4, generator=generator_for(*keys))  # noqa: E731
    assert torch.equal(draw(0, 5, 2), draw(0, 5, 2))
    assert not torch.equal(draw(0, 5, 2), draw(0, 5, 3))
    assert not torch.equal(draw(0, 5, 2), draw(0, 6, 2))
    assert not torch.equal(draw(0, 5, 2), draw(1, 5, 2))
    assert not torch.equal(draw(0, 5, 2, 0), draw(0, 5, 2, 1))


def test_derived_seed_is_a_fixed_function() -> None:
    assert derive_seed(0, 0, 0) == derive_seed(0, 0, 0)
    assert 0 <= derive_seed(123, 456, 789) < 2**63
    assert derive_seed(1, 2) != derive_seed(2, 1)
