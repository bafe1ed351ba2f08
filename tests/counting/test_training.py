"""Training FLOPs of each method against hand computations."""

from __future__ import annotations

import pytest

from sparselearning.counting import training_flops_fraction
from sparselearning.errors import SparseLearningError


def test_formulas() -> None:
    f = 0.2
    assert training_flops_fraction("dense", f) == 1.0
    assert training_flops_fraction("static", f) == pytest.approx(0.2)
    assert training_flops_fraction("set", f) == pytest.approx(0.2)
    assert training_flops_fraction("snfs", f) == pytest.approx((2 * 0.2 + 1) / 3)
    assert training_flops_fraction("rigl", f, update_interval=100) == pytest.approx((3 * 0.2 * 100 + 0.4 + 1) / 101 / 3)
    assert training_flops_fraction("pruning", 0.1, sparsity_schedule=[0.0, 0.5, 0.9, 0.9]) == pytest.approx(
        (1 + 0.5 + 0.1 + 0.1) / 4
    )


def test_rigl_wrn_figures() -> None:
    # uniform and ERK at density 0.2 on WRN-22-2 give 0.20x / 0.35x inference, hence RigL training about the same
    assert training_flops_fraction("rigl", 0.2019, update_interval=100) == pytest.approx(0.20, abs=0.01)
    assert training_flops_fraction("rigl", 0.3521, update_interval=100) == pytest.approx(0.35, abs=0.01)


def test_unknown_kind() -> None:
    with pytest.raises(SparseLearningError, match="unknown FLOPs method kind 'magic'"):
        training_flops_fraction("magic", 0.5)
