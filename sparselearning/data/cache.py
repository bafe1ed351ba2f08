"""Where decoded datasets are cached, and how a cache file is written without ever leaving a partial one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def cache_dir() -> Path:
    """`$SPARSELEARNING_CACHE`, else `~/.cache/sparselearning`."""
    configured = os.environ.get("SPARSELEARNING_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "sparselearning"


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save` to a temporary file in the same folder, then rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached tensors at `path`, or None when absent or unreadable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
