"""Checkpoints: everything a bit-exact resume needs, written atomically and read without unpickling code.

`checkpoints/last.pt` is written after every epoch (temporary file, fsync, rename), so a run killed at any
moment, even during the write, resumes from the last completed epoch. `best.pt` follows validation accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sparselearning.errors import SparseLearningError
from sparselearning.io import atomic_save, safe_load

FORMAT_VERSION = 1
REQUIRED = ("model", "optimizer", "scheduler", "masking", "epoch", "step", "rng")


def random_state() -> dict[str, Any]:
    """The global generators a training step may draw from (dropout, user code)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, content: dict[str, Any]) -> None:
    """Write `content` (plus the format version) atomically."""
    atomic_save({"format_version": FORMAT_VERSION, **content}, path)


def load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to this run (same dataset, model and method)."""
    state = safe_load(path, "checkpoint")
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise SparseLearningError(f"{path} is not a sparselearning training checkpoint")
    saved = state.get("identity", {})
    different = {key: (saved.get(key), value) for key, value in identity.items() if saved.get(key) != value}
    if different:
        described = ", ".join(f"{key} {old!r} (this run: {new!r})" for key, (old, new) in different.items())
        raise SparseLearningError(f"{path} belongs to another run: {described}; use another hydra.run.dir")
    return state
