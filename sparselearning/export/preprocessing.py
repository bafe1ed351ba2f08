"""The input preprocessing an exported model expects, stored in its file and applied by `model.preprocessing`.

A model trained here never saw raw data: its training batches were normalised per channel, `(u / 255 - mean) /
std` for uint8 pixels, `(x - mean) / std` for float inputs (`data.loader.normalisation`). Fed raw [0, 1] pixels
instead, an exported MNIST model still answers, only less accurately, and nothing says why. So the
file records what the inputs were (`preprocessing` in the payload)::

    {"input_kind": "uint8" or "float", "input_shape": [C, H, W], "mean": [one per channel], "std": [...]}

and `load_sparse` gives the model a `preprocessing` attribute (a `Preprocessing`, or None for a file written
without one: before this record existed, or by `save_sparse` without `preprocessing=`). Calling it on raw
inputs gives exactly what the model was trained on:

- a model trained on pixels (`input_kind` "uint8") takes uint8 tensors or arrays of pixel values 0..255 (divided
  by 255, bit-identical to the training batches), or floating-point ones already on the [0, 1] scale (as
  torchvision's `ToTensor` gives; a value outside [0, 1] is refused, since it means the scale is not that);
- a model trained on float inputs (`input_kind` "float") takes numbers in the units of its training arrays.

Shapes: (N, C, H, W); also (N, H, W) when C is 1, and (N, F) when the inputs were features (C = H = 1). The result
is float32 (N, C, H, W). The record is read as data and checked (`from_record`): the kind one of the two, the shape
three whole numbers, one finite mean and one finite, positive std per channel; it never names code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sparselearning.data.loader import normalisation
from sparselearning.errors import SparseLearningError

KINDS = ("uint8", "float")
#: Values one example may hold (as export's run configuration allows).
MAX_EXAMPLE_VALUES = 1 << 24
FIELDS = ("input_kind", "input_shape", "mean", "std")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


@dataclass(frozen=True)
class Preprocessing:
    """Raw inputs -> the normalised float32 (N, C, H, W) batch the model was trained on (see the module docstring)."""

    input_kind: str
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        given = {name: getattr(self, name) for name in FIELDS}
        given.update({key: list(given[key]) for key in ("input_shape", "mean", "std") if isinstance(given[key], tuple)})
        checked = self.from_record(given, "Preprocessing")  # the same checks as for a file's record
        for name in FIELDS:
            object.__setattr__(self, name, getattr(checked, name))

    @classmethod
    def from_record(cls, record: Any, where: str) -> Preprocessing:
        """The checked preprocessing of a stored record; one error naming the field otherwise."""
        if not isinstance(record, Mapping) or set(record) != set(FIELDS):
            found = sorted(map(str, record)) if isinstance(record, Mapping) else type(record).__name__
            raise SparseLearningError(
                f"'preprocessing' of {where} must hold exactly {', '.join(FIELDS)}; found {found}"
            )
        kind, shape = record["input_kind"], record["input_shape"]
        if kind not in KINDS:
            raise SparseLearningError(
                f"'preprocessing.input_kind' of {where} must be uint8 or float, got {_short(kind)}"
            )
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 3
            or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in shape)
            or math.prod(shape) > MAX_EXAMPLE_VALUES
        ):
            raise SparseLearningError(
                f"'preprocessing.input_shape' of {where} must be 3 whole numbers >= 1 (channels, height, width) with "
                f"at most {MAX_EXAMPLE_VALUES} values, got {_short(shape)}"
            )
        channels = shape[0]
        values = {}
        for key in ("mean", "std"):
            numbers = record[key]
            if (
                not isinstance(numbers, (list, tuple))
                or len(numbers) != channels
                or not all(
                    isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in numbers
                )
            ):
                raise SparseLearningError(
                    f"'preprocessing.{key}' of {where} must be {channels} finite numbers (one per channel), "
                    f"got {_short(numbers)}"
                )
            values[key] = tuple(float(n) for n in numbers)
        if not all(value > 0 for value in values["std"]):
            raise SparseLearningError(f"'preprocessing.std' of {where} must be positive, got {list(values['std'])}")
        result = object.__new__(cls)
        for name, value in (("input_kind", kind), ("input_shape", tuple(shape)), *values.items()):
            object.__setattr__(result, name, value)
        return result

    def record(self) -> dict[str, Any]:
        """The plain data a sparse model file stores."""
        return {
            "input_kind": self.input_kind,
            "input_shape": [int(size) for size in self.input_shape],
            "mean": [float(value) for value in self.mean],
            "std": [float(value) for value in self.std],
        }

    def describe(self) -> str:
        """One phrase: what the raw inputs are and how they are normalised."""
        what = "uint8 pixels / 255 (or floats in [0, 1])" if self.input_kind == "uint8" else "float inputs"
        shape = ", ".join(map(str, self.input_shape))
        return f"{what} of shape ({shape}), minus mean {list(self.mean)}, over std {list(self.std)} per channel"

    def _shaped(self, inputs: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.input_shape
        dims = tuple(inputs.shape[1:])
        if dims == (channels, height, width):
            return inputs
        if inputs.dim() == 3 and channels == 1 and dims == (height, width):
            return inputs.unsqueeze(1)
        if inputs.dim() == 2 and channels == height == 1 and dims == (width,):
            return inputs.reshape(len(inputs), 1, 1, width)
        allowed = f"(N, {channels}, {height}, {width})"
        if channels == 1:
            allowed += f" or (N, {height}, {width})" if height > 1 else f" or (N, {width})"
        raise SparseLearningError(f"raw inputs of shape {list(inputs.shape)} do not fit this model; allowed: {allowed}")

    def __call__(self, raw: torch.Tensor | np.ndarray | Sequence[Any]) -> torch.Tensor:
        """The normalised float32 (N, C, H, W) batch for raw inputs (see the module docstring for what raw is)."""
        inputs = torch.as_tensor(raw)
        if inputs.is_complex() or inputs.dtype == torch.bool:
            raise SparseLearningError(f"raw inputs must be real numbers, got {inputs.dtype}")
        inputs = self._shaped(inputs)
        channels = self.input_shape[0]
        pixels = inputs.dtype == torch.uint8 and self.input_kind == "uint8"
        scale, shift = normalisation(self.mean, self.std, channels, pixels=self.input_kind == "uint8")
        values = inputs.to(torch.float32)
        if self.input_kind == "uint8" and not pixels:
            if not inputs.is_floating_point():
                raise SparseLearningError(
                    f"raw inputs of a model trained on pixels must be uint8 (0..255) or floats in [0, 1], got "
                    f"{inputs.dtype}"
                )
            if values.numel() and not (float(values.min()) >= 0.0 and float(values.max()) <= 1.0):
                raise SparseLearningError(
                    f"float inputs of a model trained on pixels must lie in [0, 1], found [{float(values.min()):g}, "
                    f"{float(values.max()):g}]; pass uint8 pixels (0..255) or divide by 255"
                )
            scale = scale * 255.0  # [0, 1] floats: (x - mean) / std
        return values * scale.to(values.device) + shift.to(values.device)
