"""The README's run command trains on real MNIST (one short epoch here)."""

from __future__ import annotations

import pytest

from sparselearning import quickstart


def test_quickstart_learns_mnist_at_the_requested_density() -> None:
    results = quickstart.main(["--epochs", "1", "--batch-size", "200"])
    assert results["density"] == pytest.approx(0.05, abs=1e-4)
    assert results["test_accuracy"] > 0.9
