"""The registry name and keyword arguments of a run's model, from its configuration and its dataset.

Training builds its model from them (`sparselearning.train.build.build_model`) and `sparselearning export`
stores them beside the sparse weights so the file can rebuild the same model; both read them here, so export
needs nothing from the training code. Only registry models are covered: a `model._target_` is the caller's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from sparselearning.errors import SparseLearningError, check_choice
from sparselearning.models import registry

if TYPE_CHECKING:
    from sparselearning.data.registry import DatasetInfo


def registry_model_arguments(
    cfg: DictConfig, info: DatasetInfo, width_density: float = 1.0
) -> tuple[str, dict[str, Any]]:
    """The registry name and keyword arguments of a run's (non-`_target_`) model `cfg.model`: what rebuilds it
    exactly. Shared by `build_model` and `sparselearning export`.

    The dataset gives the class count and the input shape. `width_density` narrows every width by its square
    root; the callers pass the run's density for a method whose entry in the method table narrows the model
    (Small-Dense) and 1.0 otherwise, so this module needs to know no method.
    """
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(spec, dict)
    density = float(width_density)
    name = check_choice("model", spec.pop("name", None), registry)
    channels, height, width = info.input_shape
    common = {"num_classes": info.num_classes, "density": density}
    if name == "lenet300-100":
        return name, {**common, "input_size": channels * height * width}
    if name in ("lenet5", "vit-tiny"):
        if height != width:
            raise SparseLearningError(f"{name} needs square images, got {height}x{width}")
        return name, {**common, "in_channels": channels, "image_size": height, **spec}
    return name, {**common, "in_channels": channels, **spec}
