"""Files that must never be half-written or run code when read: atomic saves and weights-only loads."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

import torch

from sparselearning.errors import SparseLearningError, first_line
from sparselearning.runs.files import write_atomic


def atomic_save(obj: Any, path: Path, root: Path | None = None) -> None:
    """`torch.save` to a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any moment leaves either the previous file or the new one, never a partial file; a failed
    write (full disk, file-size limit) is one `SparseLearningError` line and keeps the previous file. The
    file and the folders below `root` (default: its own folder) must not be symbolic links.
    """

    def write(stream: IO[bytes]) -> None:
        torch.save(obj, stream)
        # Fault injection for the crash tests: widen the window in which a kill lands mid-write.
        delay = float(os.environ.get("SPARSELEARNING_SAVE_DELAY_S", "0") or 0)
        if delay > 0:
            stream.flush()
            time.sleep(delay)

    write_atomic(Path(path), write, root)


def safe_load(path: Path, what: str = "checkpoint") -> Any:
    """`torch.load(weights_only=True)` on CPU; any unreadable or hostile file becomes one clear error."""
    path = Path(path)
    if not path.is_file():
        raise SparseLearningError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SparseLearningError(f"cannot read {what} {path}: {first_line(error)}") from None


def blocking_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a writable directory (so `path` cannot be
    created there), else None. Lets commands refuse an output location before doing any work."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return None
    return existing
