"""A reader for the IDX format of (Fashion-)MNIST, so no third-party loader is needed to decode them.

An IDX file is: two zero bytes, one byte naming the element type, one byte giving the number of dimensions,
that many big-endian uint32 sizes, then the elements, big-endian, in row-major order. Files ending in `.gz`
are decompressed on the fly. Every inconsistency (bad magic, unknown type, truncated or over-long data, a
broken gzip stream) is reported as a one-line `SparseLearningError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sparselearning.errors import SparseLearningError

# Element type byte -> big-endian numpy dtype.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Refuse headers that promise more than this many bytes of data instead of trying to allocate them.
MAX_IDX_BYTES = 1 << 32


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    """Up to `count` bytes (fewer only at the end of the file)."""
    chunks = []
    remaining = count
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _parse(stream: BinaryIO, name: str) -> np.ndarray:
    header = _read_exactly(stream, 4)
    if len(header) < 4 or header[0] != 0 or header[1] != 0:
        raise SparseLearningError(f"{name} is not an IDX file (bad magic number {header.hex() or 'empty'})")
    type_code, ndim = header[2], header[3]
    dtype = IDX_TYPES.get(type_code)
    if dtype is None:
        raise SparseLearningError(f"{name} has an unknown IDX element type 0x{type_code:02x} (bad magic number)")
    if ndim == 0:
        raise SparseLearningError(f"{name} declares zero dimensions (bad magic number {header.hex()})")
    size_bytes = _read_exactly(stream, 4 * ndim)
    if len(size_bytes) < 4 * ndim:
        raise SparseLearningError(f"{name} is truncated inside its header; download it again")
    shape = struct.unpack(f">{ndim}I", size_bytes)
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise SparseLearningError(f"{name} declares an implausible shape {shape}; the file is corrupt")
    payload = _read_exactly(stream, expected + 1)
    if len(payload) < expected:
        raise SparseLearningError(
            f"{name} is truncated: {len(payload)} of {expected} data bytes for shape {shape}; download it again"
        )
    if len(payload) > expected:
        raise SparseLearningError(f"{name} has data beyond the {expected} bytes its header declares; it is corrupt")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in the IDX file at `path` (gzip-compressed when the name ends in `.gz`), native-endian."""
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                return _parse(stream, str(path))  # type: ignore[arg-type]
        with path.open("rb") as stream:
            return _parse(stream, str(path))
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise SparseLearningError(f"{path} is not a readable gzip file ({reason}); download it again") from None
