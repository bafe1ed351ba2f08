"""The arguments that rebuild a registry model from a run's configuration, and the Small-Dense width rule."""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import OmegaConf
from torch import nn

from sparselearning.data.registry import DatasetInfo
from sparselearning.errors import SparseLearningError
from sparselearning.models import registry
from sparselearning.models.arguments import registry_model_arguments
from sparselearning.models.widths import small_dense_width

MNIST = DatasetInfo("MNIST", 10, (1, 28, 28), (0.0,), (1.0,), augment=False)
CIFAR = DatasetInfo("CIFAR100", 100, (3, 32, 32), (0.0,) * 3, (1.0,) * 3, augment=True)


def _config(model: dict[str, Any], masking: str = "RigL", density: float = 0.1) -> Any:
    return OmegaConf.create({"model": model, "masking": {"name": masking, "density": density}})


def test_each_registry_model_gets_the_dataset_shape_and_classes() -> None:
    assert registry_model_arguments(_config({"name": "lenet300-100"}), MNIST) == (
        "lenet300-100",
        {"num_classes": 10, "density": 1.0, "input_size": 784},
    )
    assert registry_model_arguments(_config({"name": "lenet5"}), MNIST) == (
        "lenet5",
        {"num_classes": 10, "density": 1.0, "in_channels": 1, "image_size": 28},
    )
    assert registry_model_arguments(_config({"name": "wrn-22-2", "dropout": 0.3}), CIFAR) == (
        "wrn-22-2",
        {"num_classes": 100, "density": 1.0, "in_channels": 3, "dropout": 0.3},
    )


def test_only_small_dense_narrows_the_model() -> None:
    from sparselearning.train.build import width_density

    config = _config({"name": "lenet300-100"}, "Small_Dense", 0.25)
    _, narrowed = registry_model_arguments(config, MNIST, width_density(config.masking))
    other = _config({"name": "lenet300-100"}, "SET", 0.25)
    _, full = registry_model_arguments(other, MNIST, width_density(other.masking))
    assert (narrowed["density"], full["density"]) == (0.25, 1.0)
    model = registry["lenet300-100"](**narrowed)
    assert [layer.out_features for layer in model.modules() if isinstance(layer, nn.Linear)] == [150, 50, 10]


def test_bad_model_settings_are_one_error_line() -> None:
    with pytest.raises(SparseLearningError, match=r"unknown model 'vgg'; allowed: lenet300-100, lenet5"):
        registry_model_arguments(_config({"name": "vgg"}), MNIST)
    wide = DatasetInfo("Synthetic", 10, (1, 28, 32), (0.0,), (1.0,), augment=False)
    with pytest.raises(SparseLearningError, match=r"^lenet5 needs square images, got 28x32$"):
        registry_model_arguments(_config({"name": "lenet5"}), wide)


def test_training_builds_its_model_with_the_same_function() -> None:
    from sparselearning.train import build

    assert build.registry_model_arguments is registry_model_arguments


@pytest.mark.parametrize(("width", "density", "expected"), [(300, 0.25, 150), (100, 0.05, 22), (3, 0.0001, 1)])
def test_small_dense_width_scales_by_the_square_root_of_density(width: int, density: float, expected: int) -> None:
    assert small_dense_width(width, density) == expected


def test_small_dense_width_refuses_a_density_outside_0_1() -> None:
    with pytest.raises(SparseLearningError, match=r"density must be in \(0, 1\], got 0"):
        small_dense_width(100, 0)
