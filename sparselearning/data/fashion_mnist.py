"""Fashion-MNIST from its four standard IDX `.gz` files: a harder drop-in for MNIST (10 classes, 1x28x28).

By default the files come from the Debian package `dataset-fashion-mnist`, which installs them in
`/usr/share/datasets/fashion-mnist/`; any other folder holding the same four files can be passed as `root`
(uncompressed copies without `.gz` are accepted too). The files are parsed by `sparselearning.data.idx`.

The official release has no validation set, so one is cut from the 60,000 training images, deterministically
and without shuffling: the LAST tenth (images 54,000-59,999) is the validation split and the first 54,000 the
training split. The 10,000 test images are kept as they are. Every split holds all ten classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sparselearning.data.idx import read_idx
from sparselearning.errors import SparseLearningError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
NUM_CLASSES = 10


def _locate(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    missing = []
    for key, name in FILES.items():
        for candidate in (root / name, root / name.removesuffix(".gz")):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(name)
    if missing:
        raise SparseLearningError(
            f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}): run `apt-get install "
            f"dataset-fashion-mnist` or pass dataset.root=DIR for a folder holding the four IDX .gz files"
        )
    return found


def _images(path: Path) -> np.ndarray:
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (28, 28):
        raise SparseLearningError(
            f"{path} should hold uint8 images of shape (N, 28, 28), found {array.dtype} {array.shape}"
        )
    return array


def _labels(path: Path, count: int, images: Path) -> np.ndarray:
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise SparseLearningError(f"{path} should hold uint8 labels of shape (N,), found {array.dtype} {array.shape}")
    if len(array) != count:
        raise SparseLearningError(f"{path} holds {len(array)} labels but {images} holds {count} images")
    if len(array) and int(array.max()) >= NUM_CLASSES:
        raise SparseLearningError(f"{path} has label {int(array.max())}; Fashion-MNIST labels are 0..9")
    return array


def load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """`{train,val,test}_{images,labels}`: uint8 images (N, 1, 28, 28) and int64 labels (54k/6k/10k)."""
    folder = Path(root) if root is not None else DEFAULT_ROOT
    paths = _locate(folder)
    result: dict[str, torch.Tensor] = {}
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "test"):
        images = _images(paths[f"{split}_images"])
        labels = _labels(paths[f"{split}_labels"], len(images), paths[f"{split}_images"])
        splits[split] = (images, labels)
    train_images, train_labels = splits["train"]
    cut = len(train_labels) - len(train_labels) // 10  # the last tenth becomes the validation split
    parts = {
        "train": (train_images[:cut], train_labels[:cut]),
        "val": (train_images[cut:], train_labels[cut:]),
        "test": splits["test"],
    }
    for split, (images, labels) in parts.items():
        result[f"{split}_images"] = torch.from_numpy(np.array(images[:, None]))
        result[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    return result
