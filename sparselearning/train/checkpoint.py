"""Checkpoints: everything a bit-exact resume needs, written atomically and read without unpickling code.

`checkpoints/last.pt` is written after every epoch (temporary file, fsync, rename), and mid-epoch when the
run is stopped by SIGTERM or SIGINT, so a run killed at any moment, even during the write, resumes from the
last saved step. `best.pt` follows validation accuracy.

A checkpoint is read as data (`weights_only=True`) and then checked field by field before anything of it
is used: its identity settings must be this run's, its weights finite, its counters whole numbers inside
the run's schedule. A damaged or hostile field is one line naming it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from sparselearning.errors import SparseLearningError
from sparselearning.io import atomic_save, safe_load
from sparselearning.runs.files import load_yaml_data
from sparselearning.runs.identity import describe_differences, differences, run_settings

FORMAT_VERSION = 2
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


def save_checkpoint(path: Path, content: dict[str, Any], root: Path | None = None) -> None:
    """Write `content` (plus the format version) atomically, never through a link below `root`."""
    atomic_save({"format_version": FORMAT_VERSION, **content}, path, root)


def nonfinite_tensor(tensors: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor holding NaN or infinity, else None."""
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def _whole(state: dict[str, Any], key: str, path: Path, maximum: int) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise SparseLearningError(
            f"checkpoint {path}: field {key!r} must be a whole number in 0..{maximum}, got {value!r}"
        )
    return value


def _saved_settings(state: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The identity settings a checkpoint was saved with; older checkpoints only carry their config text."""
    settings = state.get("settings")
    if isinstance(settings, dict):
        return settings, False
    text = state.get("config")
    if isinstance(text, str):
        config = load_yaml_data(text, "the configuration stored in the checkpoint")
        if isinstance(config, dict):
            return run_settings(config), True
    return None, True


def check_fields(state: Any, path: Path, epochs: int, steps_per_epoch: int) -> dict[str, Any]:
    """Refuse a checkpoint whose fields could not have been written by a run of this schedule."""
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise SparseLearningError(f"{path} is not a sparselearning training checkpoint")
    for key in ("model", "optimizer", "scheduler", "masking", "rng"):
        if not isinstance(state[key], dict):
            kind = type(state[key]).__name__
            raise SparseLearningError(f"checkpoint {path}: field {key!r} must be a mapping, got {kind}")
    bad = nonfinite_tensor(state["model"])
    if bad is not None:
        raise SparseLearningError(f"checkpoint {path}: weight {bad!r} holds NaN or infinity; it cannot be resumed")
    if not isinstance(state["rng"].get("torch"), torch.Tensor) or state["rng"]["torch"].dtype != torch.uint8:
        raise SparseLearningError(f"checkpoint {path}: field 'rng' holds no torch generator state")
    epoch = _whole(state, "epoch", path, epochs)
    step = _whole(state, "step", path, epochs * steps_per_epoch)
    batch = state.get("batch", 0)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < steps_per_epoch:
        raise SparseLearningError(
            f"checkpoint {path}: field 'batch' must be a whole number in 0..{steps_per_epoch - 1}, got {batch!r}"
        )
    for key, low, high in (("best_val_accuracy", -1.0, 1.0), ("wall_time_s", 0.0, math.inf)):
        value = state.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
            allowed = f"a number in [{low}, {high}]"
            raise SparseLearningError(f"checkpoint {path}: field {key!r} must be {allowed}, got {value!r}")
        if not math.isfinite(value):
            raise SparseLearningError(f"checkpoint {path}: field {key!r} must be finite, got {value!r}")
    if step != epoch * steps_per_epoch + batch:
        raise SparseLearningError(
            f"checkpoint {path}: field 'step' is {step}, but epoch {epoch} and batch {batch} of this run "
            f"({steps_per_epoch} steps per epoch) mean step {epoch * steps_per_epoch + batch}"
        )
    return state


def load_checkpoint(path: Path, settings: dict[str, Any], epochs: int, steps_per_epoch: int) -> dict[str, Any]:
    """Read a checkpoint, check its fields and that it belongs to this run (the same identity settings)."""
    state = check_fields(safe_load(path, "checkpoint"), path, epochs, steps_per_epoch)
    saved, lenient = _saved_settings(state)
    if saved is None:
        raise SparseLearningError(f"checkpoint {path} records no settings; it cannot be matched to this run")
    found = differences(saved, settings, lenient=lenient)
    if found:
        raise SparseLearningError(
            f"{path} belongs to a run with other settings: {describe_differences(found)}; "
            "give this run its own hydra.run.dir"
        )
    return state
