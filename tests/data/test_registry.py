"""The dataset registry: names, normalisation constants, defaults, options, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sparselearning.data import registry
from sparselearning.data.loader import InMemoryLoader
from sparselearning.data.registry import DATASETS, DatasetInfo, channel_stats, dataset_options, load_dataset
from sparselearning.errors import SparseLearningError

EXPECTED = {
    "MNIST": (10, (1, 28, 28), (0.1307,), (0.3081,), False),
    "FashionMNIST": (10, (1, 28, 28), (0.2860,), (0.3530,), False),
    "CIFAR10": (10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "CIFAR100": (100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
}


@pytest.fixture
def fake_readers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Replace the file readers so the table is checked without any dataset on disk."""
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def reader(name: str):  # type: ignore[no-untyped-def]
        def read(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            calls.append((name, args, kwargs))
            return {"train_images": torch.zeros(1, 1, 1, 1, dtype=torch.uint8)}

        return read

    for name in ("load_mnist", "load_fashion_mnist", "load_cifar"):
        monkeypatch.setattr(registry, name, reader(name))
    return calls


def test_registered_names() -> None:
    assert list(DATASETS) == ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "Synthetic", "Arrays", "Custom"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_info_of_the_real_datasets(name: str, fake_readers: list[Any]) -> None:
    _, info = load_dataset(name)
    assert isinstance(info, DatasetInfo) and info.name == name
    assert (info.num_classes, info.input_shape, info.mean, info.std, info.augment) == EXPECTED[name]
    assert len(info.mean) == len(info.std) == info.input_shape[0]


def test_roots_and_options_reach_the_readers(fake_readers: list[Any], tmp_path: Path) -> None:
    load_dataset("CIFAR100", root=str(tmp_path), download=True)
    load_dataset("CIFAR10", root=tmp_path)
    load_dataset("FashionMNIST", root=tmp_path)
    load_dataset("MNIST")
    assert fake_readers == [
        ("load_cifar", (tmp_path,), {"num_classes": 100, "download": True}),
        ("load_cifar", (tmp_path,), {"num_classes": 10, "download": False}),
        ("load_fashion_mnist", (tmp_path,), {}),
        ("load_mnist", (), {}),
    ]


def test_unknown_names_and_options_list_what_is_allowed() -> None:
    with pytest.raises(SparseLearningError) as excinfo:
        load_dataset("ImageNet")
    assert str(excinfo.value) == (
        "unknown dataset 'ImageNet'; allowed: MNIST, FashionMNIST, CIFAR10, CIFAR100, Synthetic, Arrays, Custom"
    )
    with pytest.raises(SparseLearningError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(
        SparseLearningError, match="unknown option.* colour for dataset Synthetic; allowed: num_classes"
    ):
        load_dataset("Synthetic", colour=True)
    with pytest.raises(SparseLearningError, match="allowed: none"):
        load_dataset("MNIST", download=True)
    assert dataset_options("CIFAR10") == ["download"]
    assert dataset_options("Synthetic") == ["num_classes", "shape", "train", "val", "test", "seed"]


def test_a_root_is_refused_where_nothing_is_read(tmp_path: Path) -> None:
    for name in ("MNIST", "Synthetic"):
        with pytest.raises(SparseLearningError, match="dataset.root does not apply"):
            load_dataset(name, root=tmp_path)


def test_synthetic_info_is_measured_and_batches_come_out_standardised() -> None:
    tensors, info = load_dataset("Synthetic", num_classes=4, shape=[3, 8, 8], train=256, val=16, test=16, seed=5)
    assert (info.num_classes, info.input_shape, info.augment) == (4, (3, 8, 8), False)
    assert tensors["train_images"].shape == (256, 3, 8, 8) and int(tensors["train_labels"].max()) == 3
    pixels = tensors["train_images"].double() / 255
    for channel in range(3):
        assert info.mean[channel] == pytest.approx(pixels[:, channel].mean().item())
        assert info.std[channel] == pytest.approx(pixels[:, channel].std(unbiased=False).item())
    loader = InMemoryLoader(tensors["train_images"], tensors["train_labels"], 256, info.mean, info.std, shuffle=False)
    inputs, _ = next(iter(loader))
    assert inputs.mean().abs().item() < 1e-4 and abs(inputs.std().item() - 1) < 1e-2


def test_channel_stats_of_a_constant_channel_do_not_divide_by_zero() -> None:
    images = torch.full((2, 2, 3, 3), 51, dtype=torch.uint8)
    images[:, 1] = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1)
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.2, 0.5)) and std == pytest.approx((1e-3, 0.5))


def test_real_fashion_mnist_through_the_registry() -> None:
    from sparselearning.data.fashion_mnist import DEFAULT_ROOT, FILES

    if not all((DEFAULT_ROOT / name).is_file() for name in FILES.values()):
        pytest.skip(f"Fashion-MNIST is not installed in {DEFAULT_ROOT}")
    tensors, info = load_dataset("FashionMNIST")
    assert tensors["train_images"].shape[1:] == info.input_shape
    assert int(tensors["test_labels"].max()) + 1 == info.num_classes
