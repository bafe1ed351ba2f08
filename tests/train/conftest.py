"""Composing `sparselearning train` configurations in-process for fast end-to-end runs on Synthetic data."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

SMALL = [
    "dataset=Synthetic",
    "dataset.train_size=64",
    "dataset.val_size=32",
    "dataset.test_size=32",
    "dataset.batch_size=16",
    "optimizer.epochs=1",
    "log_interval=2",
    "progress=false",
    "plots=false",
]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_module("sparselearning.conf", version_base=None):
        return compose("config", overrides=overrides)


@pytest.fixture
def small_config() -> Callable[..., DictConfig]:
    """A small Synthetic run's config with extra overrides appended."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([*SMALL, *overrides])

    return make
