"""CIFAR-10 and CIFAR-100 from the official "python version" archives, read safely and without extracting.

Each archive (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`) holds a folder of pickled batches: for
CIFAR-10 `cifar-10-batches-py/data_batch_1..5` and `test_batch`, labels under `labels`; for CIFAR-100
`cifar-100-python/train` and `test`, labels under `fine_labels`. Every batch has `data`, a uint8 array with
one row of 3072 bytes per image: 1024 red, then 1024 green, then 1024 blue values, each a 32x32 image in
row-major order, so a row reshapes directly to (3, 32, 32).

`root` may hold the extracted folder, the `.tar.gz` (read member by member with `tarfile`, nothing written to
disk; absolute names, `..` and links are refused), or be either of them itself. With `download=True` a
missing archive is fetched from the official URL and its MD5 checked before it is kept.

Pickles can run arbitrary code when loaded, so batches go through an unpickler that knows only what a CIFAR
batch contains: plain containers, strings, numbers, and numpy arrays of numeric dtypes. Any other global
(`os.system`, `builtins.eval`, ...) is refused with a `SparseLearningError` before anything runs.

The last `validation_size` (5000) training images become the validation split, the rest the training split.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import re
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from sparselearning.data.cache import cache_dir
from sparselearning.errors import SparseLearningError

try:
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct  # type: ignore[no-redef]

VALIDATION_SIZE = 5000
MAX_MEMBER_BYTES = 1 << 30  # the largest official batch (CIFAR-100 train) is about 150 MB
IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches and how its archive is named, fetched and checked."""

    name: str
    archive: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    url: str
    md5: str


LAYOUTS: dict[int, CifarLayout] = {
    10: CifarLayout(
        name="CIFAR-10",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{index}" for index in range(1, 6)),
        test=("test_batch",),
        label_key="labels",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
    ),
    100: CifarLayout(
        name="CIFAR-100",
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        label_key="fine_labels",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --- the restricted unpickler ---------------------------------------------------------------------------


class _NdarrayToken:
    """Stands for `numpy.ndarray` inside a pickle: accepted as `_reconstruct`'s first argument, not callable."""

    __slots__ = ()


_NDARRAY = _NdarrayToken()
_NUMERIC_DTYPE = re.compile(r"[<>|=]?[biuf][1248]")


def _safe_reconstruct(subtype: object, shape: object, code: object) -> object:
    # numpy pickles every array as _reconstruct(ndarray, (0,), b"b") followed by __setstate__.
    if subtype is not _NDARRAY or shape != (0,) or code not in (b"b", "b"):
        raise pickle.UnpicklingError("numpy _reconstruct called with unexpected arguments")
    return _numpy_reconstruct(np.ndarray, (0,), b"b")


def _safe_dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
    text = spec.decode("latin1") if isinstance(spec, bytes) else spec
    if not isinstance(text, str) or not _NUMERIC_DTYPE.fullmatch(text):
        raise pickle.UnpicklingError(f"dtype {spec!r} is not allowed (only plain numeric dtypes)")
    return np.dtype(text, align=bool(align), copy=bool(copy))


def _safe_frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    # Protocol 5 pickles arrays as numpy._core.numeric._frombuffer(bytes, dtype, shape, order).
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy _frombuffer called with unexpected arguments")
    if order not in ("C", "F") or not isinstance(shape, tuple):
        raise pickle.UnpicklingError("numpy _frombuffer called with unexpected arguments")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _safe_encode(text: object, encoding: object = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol 0-2 pickles as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode called with unexpected arguments")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the few globals a pickled numpy array needs, each replaced by a checked stand-in."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not allowed")


def unpickle_batch(blob: bytes, source: str) -> dict[str, Any]:
    """The dict pickled in one CIFAR batch file, read with the restricted unpickler; `source` names it in errors."""
    try:
        batch = _CifarUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as error:
        raise SparseLearningError(
            f"{source} is not a safe CIFAR batch ({_one_line(error)}); it holds more than numpy arrays and plain "
            f"containers, so it is corrupt or hostile: delete it and get the official archive again"
        ) from None
    if not isinstance(batch, dict):
        raise SparseLearningError(f"{source} is not a CIFAR batch (it holds a {type(batch).__name__}, not a dict)")
    keys = {}
    for key, value in batch.items():
        if isinstance(key, bytes):
            key = key.decode("latin1")
        if not isinstance(key, str):
            raise SparseLearningError(f"{source} is not a CIFAR batch (a key is a {type(key).__name__})")
        keys[key] = value
    return keys


def _decode_batch(blob: bytes, source: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = unpickle_batch(blob, source)
    data, labels = batch.get("data"), batch.get(label_key)
    if data is None or labels is None:
        raise SparseLearningError(
            f"{source} lacks 'data' or {label_key!r}; it is not a {num_classes}-class CIFAR batch"
        )
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise SparseLearningError(f"{source}: 'data' should be a uint8 array of shape (N, 3072), found {found}")
    if not isinstance(labels, (list, np.ndarray)):
        raise SparseLearningError(f"{source}: {label_key!r} should be a list of ints, found {type(labels).__name__}")
    try:
        label_array = np.asarray(labels)
    except Exception as error:
        raise SparseLearningError(f"{source}: {label_key!r} is not a list of ints ({_one_line(error)})") from None
    integral = label_array.dtype.kind in "iu" or len(label_array) == 0
    if label_array.ndim != 1 or len(label_array) != len(data) or not integral:
        raise SparseLearningError(
            f"{source}: {label_key!r} should hold one int per image ({len(data)}), found {label_array.dtype} "
            f"{label_array.shape}"
        )
    if len(label_array) and (label_array.min() < 0 or label_array.max() >= num_classes):
        raise SparseLearningError(
            f"{source}: labels span {label_array.min()}..{label_array.max()}, outside 0..{num_classes - 1}; "
            f"is this the CIFAR-{num_classes} archive?"
        )
    return data.reshape(-1, 3, 32, 32), label_array.astype(np.int64)


# --- finding and reading the batch files ----------------------------------------------------------------


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise SparseLearningError(f"{archive} holds a member with an absolute name {name!r}; refusing the archive")
    parts = tuple(part for part in PurePosixPath(name.replace("\\", "/")).parts if part != ".")
    if ".." in parts:
        raise SparseLearningError(f"{archive} holds a member named {name!r} that climbs out with '..'; refusing it")
    return parts


def _read_from_archive(archive: Path, layout: CifarLayout) -> dict[str, bytes]:
    wanted = {(layout.folder, name): name for name in layout.train + layout.test}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                key = _member_parts(member.name, archive)
                if key not in wanted:
                    continue
                if not member.isfile():
                    raise SparseLearningError(f"{archive}: {member.name} is a link or special file, not a batch")
                if wanted[key] in blobs:
                    raise SparseLearningError(f"{archive} holds {member.name} twice; refusing the ambiguous archive")
                if member.size > MAX_MEMBER_BYTES:
                    raise SparseLearningError(f"{archive}: {member.name} is implausibly large ({member.size} bytes)")
                stream = tar.extractfile(member)
                if stream is None:
                    raise SparseLearningError(f"{archive}: {member.name} cannot be read as a file")
                blobs[wanted[key]] = stream.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise SparseLearningError(
            f"{archive} is not a readable .tar.gz ({_one_line(error)}); delete it and download it again"
        ) from None
    missing = [f"{layout.folder}/{name}" for name in wanted.values() if name not in blobs]
    if missing:
        raise SparseLearningError(f"{archive} lacks {', '.join(missing)}; it is not the {layout.name} python archive")
    return blobs


def _read_from_folder(folder: Path, layout: CifarLayout) -> dict[str, bytes]:
    missing = [name for name in layout.train + layout.test if not (folder / name).is_file()]
    if missing:
        raise SparseLearningError(
            f"{folder} lacks {', '.join(missing)}; extract {layout.archive} again or put the archive itself there"
        )
    return {name: (folder / name).read_bytes() for name in layout.train + layout.test}


def _find_source(root: Path, layout: CifarLayout) -> Path | None:
    """The extracted folder or the archive to read, in that order of preference; None when neither is there."""
    if root.is_file():
        return root
    first = layout.train[0]
    for folder in (root / layout.folder, root):
        if (folder / first).is_file():
            return folder
    archive = root / layout.archive
    return archive if archive.is_file() else None


# --- download -------------------------------------------------------------------------------------------


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: str | os.PathLike[str], num_classes: int = 10) -> None:
    """Raise unless the file at `path` has the official MD5 of the CIFAR-`num_classes` archive: the check for an
    archive copied by hand onto a machine without internet (downloads are checked by `download_archive`)."""
    layout = _layout(num_classes)
    found = file_md5(path)
    if found != layout.md5:
        raise SparseLearningError(
            f"checksum mismatch for {path}: md5 {found}, expected {layout.md5}; delete it and put an intact copy "
            f"of {layout.archive} from {layout.url} there"
        )


def download_archive(root: str | os.PathLike[str], num_classes: int = 10) -> Path:
    """Fetch the official archive into `root`, check its MD5, and return its path (nothing is kept on failure)."""
    layout = _layout(num_classes)
    folder = Path(root)
    target = folder / layout.archive
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial_name = tempfile.mkstemp(prefix=f".{layout.archive}.", suffix=".part", dir=folder)
    except OSError as error:
        raise SparseLearningError(
            f"cannot write to {folder} ({_one_line(error)}); pass a writable dataset.root"
        ) from None
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as output:
            try:
                with urllib.request.urlopen(layout.url, timeout=60) as response:
                    while chunk := response.read(1 << 20):
                        output.write(chunk)
            except (OSError, ValueError, http.client.HTTPException) as error:
                raise SparseLearningError(
                    f"could not download {layout.url} ({_one_line(error)}); fetch it on a machine with internet "
                    f"access and put {layout.archive} in {folder}"
                ) from None
        found = file_md5(partial)
        if found != layout.md5:
            raise SparseLearningError(
                f"checksum mismatch for {layout.url}: md5 {found}, expected {layout.md5}; the download is corrupt: "
                f"try again or put an intact {layout.archive} in {folder}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# --- the public loader ----------------------------------------------------------------------------------


def _layout(num_classes: int) -> CifarLayout:
    if isinstance(num_classes, bool) or num_classes not in LAYOUTS:
        raise SparseLearningError(f"CIFAR num_classes must be 10 or 100, got {num_classes!r}")
    return LAYOUTS[num_classes]


def default_root() -> Path:
    """Where CIFAR archives are looked for (and downloaded to) when no root is given."""
    return cache_dir() / "cifar"


def load_cifar(
    root: str | os.PathLike[str] | None = None,
    num_classes: int = 10,
    download: bool = False,
    validation_size: int = VALIDATION_SIZE,
) -> dict[str, torch.Tensor]:
    """`{train,val,test}_{images,labels}`: uint8 images (N, 3, 32, 32) and int64 labels (45k/5k/10k)."""
    layout = _layout(num_classes)
    if isinstance(validation_size, bool) or not isinstance(validation_size, int) or validation_size < 0:
        raise SparseLearningError(f"validation_size must be a whole number >= 0, got {validation_size!r}")
    folder = Path(root) if root is not None else default_root()
    source = _find_source(folder, layout)
    if source is None:
        if not download:
            raise SparseLearningError(
                f"{layout.name} not found in {folder}: put {layout.archive} (or its extracted {layout.folder}/) "
                f"there, or pass download=True to fetch it from {layout.url}"
            )
        source = download_archive(folder, num_classes)
    blobs = _read_from_folder(source, layout) if source.is_dir() else _read_from_archive(source, layout)

    def decode(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_decode_batch(blobs.pop(name), f"{source}:{name}", layout.label_key, num_classes) for name in names]
        return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])

    train_images, train_labels = decode(layout.train)
    test_images, test_labels = decode(layout.test)
    if validation_size >= len(train_labels):
        raise SparseLearningError(
            f"validation_size {validation_size} leaves no training images out of {len(train_labels)}; use a smaller one"
        )
    cut = len(train_labels) - validation_size
    splits = {
        "train": (train_images[:cut], train_labels[:cut]),
        "val": (train_images[cut:], train_labels[cut:]),
        "test": (test_images, test_labels),
    }
    result: dict[str, torch.Tensor] = {}
    for split, (images, labels) in splits.items():
        result[f"{split}_images"] = torch.from_numpy(np.array(images, dtype=np.uint8))
        result[f"{split}_labels"] = torch.from_numpy(np.array(labels, dtype=np.int64))
    return result
