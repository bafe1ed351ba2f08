"""`_target_` functions for the Custom dataset tests: small learnable datasets of (input, label) pairs.

Used on the command line as `dataset.train._target_=tests.data.custom_target.pixels` (the tests run with the
repository root importable). Each is deterministic in its arguments.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from sparselearning.data.synthetic import make_synthetic


def pixels(split: str = "train", size: int = 64, seed: int = 0) -> Dataset:
    """uint8 images (1, 8, 8) of 4 classes, `size` of them, from the Synthetic generator."""
    tensors = make_synthetic(num_classes=4, shape=(1, 8, 8), train=size, val=size, test=size, seed=seed)
    return TensorDataset(tensors[f"{split}_images"], tensors[f"{split}_labels"])


def features(split: str = "train", size: int = 64) -> Dataset:
    """float features (12,) of 3 classes whose class shifts the mean: learnable by a linear model."""
    generator = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    labels = torch.arange(size) % 3
    inputs = torch.randn(size, 12, generator=generator, dtype=torch.float64) * 0.5 + 3.0 * labels[:, None]
    return TensorDataset(inputs, labels)


def not_a_dataset() -> int:
    """A target that returns something other than a Dataset."""
    return 3


class Pairs(Dataset):
    """Items that are not (input, label) pairs."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(3)
