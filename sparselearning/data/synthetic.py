"""A small synthetic dataset that any model can learn in a few steps, for fast end-to-end tests without downloads.

Each class has a fixed random prototype image (uniform pixels in [0, 1]); a sample is its class's prototype
plus Gaussian noise (standard deviation `noise`, 0.25 by default), clipped to [0, 1] and quantised to uint8,
so the data has the same layout as the real datasets: `{train,val,test}_{images,labels}` with uint8 images
(N, C, H, W) and int64 labels. Labels cycle through the classes (so every split is balanced) and are then
shuffled. Everything comes from one `torch.Generator` seeded with `seed`: with the same torch version the
same arguments give the same bytes on every machine, and the global RNG is never touched. Prototypes are far
apart compared with the noise, so even a linear model separates the classes almost perfectly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sparselearning.errors import SparseLearningError


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SparseLearningError(f"synthetic {name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _split(
    prototypes: torch.Tensor, count: int, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    num_classes = len(prototypes)
    labels = torch.arange(count) % num_classes
    labels = labels[torch.randperm(count, generator=generator)]
    samples = prototypes[labels] + noise * torch.randn((count, *prototypes.shape[1:]), generator=generator)
    images = (samples.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return images, labels.to(torch.int64)


def make_synthetic(
    num_classes: int = 10,
    shape: Sequence[int] = (1, 28, 28),
    train: int = 2048,
    val: int = 256,
    test: int = 512,
    seed: int = 0,
    noise: float = 0.25,
) -> dict[str, torch.Tensor]:
    """`{train,val,test}_{images,labels}`: learnable uint8 images (N, *shape) and int64 labels in 0..num_classes-1."""
    _check_count(num_classes, "num_classes", 2)
    dims = tuple(shape)
    if len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise SparseLearningError(f"synthetic shape must be three whole numbers (C, H, W) >= 1, got {shape!r}")
    counts = {"train": _check_count(train, "train", 1), "val": _check_count(val, "val", 0)}
    counts["test"] = _check_count(test, "test", 0)
    _check_count(seed, "seed", 0)
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not 0.0 <= noise < 10.0:
        raise SparseLearningError(f"synthetic noise must be a number in [0, 10), got {noise!r}")

    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand((num_classes, *dims), generator=generator)
    result: dict[str, torch.Tensor] = {}
    for split, count in counts.items():
        result[f"{split}_images"], result[f"{split}_labels"] = _split(prototypes, count, float(noise), generator)
    return result
