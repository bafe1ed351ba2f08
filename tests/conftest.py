"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from tests.helpers import MODEL_FACTORIES


@pytest.fixture(params=sorted(MODEL_FACTORIES))
def model_factory(request: pytest.FixtureRequest) -> Callable[[], nn.Module]:
    """Each small model family in turn (MLP, conv net with BatchNorm, residual net)."""
    return MODEL_FACTORIES[request.param]


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
