"""Where decoded datasets are cached, and how a cache file is written without ever leaving a partial one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sparselearning.io import atomic_save

__all__ = ["atomic_save", "cache_dir", "load_cached"]


def cache_dir() -> Path:
    """`$SPARSELEARNING_CACHE`, else `~/.cache/sparselearning`."""
    configured = os.environ.get("SPARSELEARNING_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "sparselearning"


def load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached tensors at `path`, or None when absent or unreadable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
