"""`dataset=Arrays dataset.path=FILE.npz`: a user's own data as numpy arrays in one `.npz` file.

The file holds `train_x`, `train_y`, `test_x`, `test_y`, and optionally both `val_x` and `val_y` (made with
`numpy.savez(path, train_x=..., ...)`); no other array. It is read with `numpy.load(path, allow_pickle=False)`:
object arrays, which would need pickle and could run code, are refused, so a file can only ever be data. A
path that is not a regular file (a folder, a pipe that would block) is refused; a symbolic link to a regular
file is read like the file, since reading cannot change what it points to, and the fingerprint of the data
(not its path) is what the run records. What the arrays may hold, and how they become tensors, is `own`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from sparselearning.data.info import DatasetInfo
from sparselearning.data.own import ALLOWED_INPUTS, own_dataset
from sparselearning.errors import SparseLearningError

REQUIRED = ("train_x", "train_y", "test_x", "test_y")
OPTIONAL = ("val_x", "val_y")


def _tensor(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> torch.Tensor:
    """One array of the archive as a tensor; inputs must be uint8 or floating point, labels integers."""
    try:
        array = archive[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # object arrays need pickle: refused
        reason = " ".join(str(error).split())
        raise SparseLearningError(f"cannot read array {key!r} of {path}: {reason}") from None
    if key.endswith("_x") and not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
        raise SparseLearningError(f"array {key!r} of {path} is {array.dtype}; allowed: {ALLOWED_INPUTS}")
    if key.endswith("_y"):
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise SparseLearningError(
                f"array {key!r} of {path} is {array.dtype}; labels must be integers (class numbers 0, 1, ...)"
            )
        if array.size and (int(array.max()) >= 2**31 or int(array.min()) < 0):
            raise SparseLearningError(
                f"array {key!r} of {path} holds the label {int(array.max()) if array.max() > 0 else int(array.min())}"
                "; labels are class numbers 0, 1, ... num_classes-1"
            )
        array = array.astype(np.int64)
    elif array.dtype not in (np.uint8, np.float32, np.float64):
        array = array.astype(np.float32)  # float16 and the like: torch reads float32
    return torch.from_numpy(np.ascontiguousarray(array))


def load_arrays(
    path: str | None, val_fraction: float | None = None, num_classes: int | None = None
) -> tuple[dict[str, torch.Tensor], DatasetInfo]:
    """`(tensors, info)` from the `.npz` file at `path` (see the module docstring and `own.own_dataset`)."""
    if not isinstance(path, str) or not path or path == "???":
        raise SparseLearningError(
            f"dataset=Arrays needs dataset.path, an .npz file (dataset.path=data.npz); got {path!r}"
        )
    file = Path(path)
    if not file.exists():
        raise SparseLearningError(f"dataset.path={path}: no such file")
    if not file.is_file():
        raise SparseLearningError(f"dataset.path={path} is not a regular file; give an .npz file")
    try:
        loaded = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split())
        raise SparseLearningError(f"cannot read {path} as an .npz file: {reason}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise SparseLearningError(
            f"{path} holds one array, not an .npz archive of train_x, train_y, test_x, test_y; write it with "
            "numpy.savez(path, train_x=..., train_y=..., test_x=..., test_y=...)"
        )
    with loaded as archive:
        names = set(archive.files)
        missing = [key for key in REQUIRED if key not in names]
        if missing:
            raise SparseLearningError(f"{path} has no array {', '.join(missing)}; it needs {', '.join(REQUIRED)}")
        unknown = sorted(names - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise SparseLearningError(
                f"{path} holds array(s) {', '.join(unknown)} that Arrays does not read; allowed: "
                f"{', '.join(REQUIRED + OPTIONAL)}"
            )
        if ("val_x" in names) != ("val_y" in names):
            raise SparseLearningError(f"{path} holds only one of val_x and val_y; give both or neither")
        splits: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}
        for split in ("train", "val", "test"):
            if f"{split}_x" in names:
                splits[split] = (_tensor(archive, f"{split}_x", file), _tensor(archive, f"{split}_y", file))
    return own_dataset("Arrays", splits, path, val_fraction=val_fraction, num_classes=num_classes)
