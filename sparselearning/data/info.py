"""What a run needs to know about a dataset besides its tensors (`DatasetInfo`), and measuring pixel statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a loader need to know about a dataset.

    `input_kind` is "uint8" for pixels (mean and std on the [0, 1] pixel scale, inputs divided by 255 first) or
    "float" for float inputs (mean and std in the inputs' own units). `fingerprint` (`sha256:<hex>` of the data)
    is set for a user's own data (`dataset=Arrays`, `dataset=Custom`), whose name alone does not say what it holds.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, on the [0, 1] pixel scale (uint8) or in the inputs' units (float)
    std: tuple[float, ...]
    augment: bool  # whether random crop + horizontal flip is applied to training batches by default
    input_kind: str = "uint8"
    fingerprint: str | None = None


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), on the [0, 1] scale."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255.0
    std = pixels.std(dim=1, unbiased=False).clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(pixels.mean(dim=1).tolist()), tuple(std.tolist())


def data_record(info: DatasetInfo) -> dict[str, Any]:
    """`info` as plain data (what a checkpoint stores, so `export` never needs the data or its code again)."""
    return {
        "name": info.name,
        "num_classes": int(info.num_classes),
        "input_shape": [int(size) for size in info.input_shape],
        "input_kind": info.input_kind,
        "mean": [float(value) for value in info.mean],
        "std": [float(value) for value in info.std],
        "fingerprint": info.fingerprint,
    }
