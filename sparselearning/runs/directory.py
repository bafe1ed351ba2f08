"""Who owns a run directory: its file layout, the identity it was made with, and the lock of its trainer.

A run directory is either new (missing or empty) or a run of this project. A folder of someone else's files
is refused, so a mistyped `hydra.run.dir` can never overwrite them. A run directory belongs to one identity
(see `sparselearning.runs.identity`): training with other settings in it is refused with the settings that
differ, so a result always belongs to the settings that produced it. One process at a time trains in it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from sparselearning.errors import SparseLearningError
from sparselearning.runs import files
from sparselearning.runs.identity import describe_differences, differences, run_settings

CONFIG = "config.yaml"
IDENTITY = "identity.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
FINAL_MASKS = "final_masks.pt"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"
IDENTITY_FORMAT = 1
# What a run of this project writes at its top level; anything else marks a folder as someone else's.
RUN_ENTRIES = frozenset(
    {
        CONFIG,
        IDENTITY,
        SUMMARY,
        METRICS,
        FINAL_MASKS,
        CHECKPOINTS,
        LOCK,
        "plots",
        "tensorboard",
        "report",
        ".hydra",
        "app.log",
        "train.log",
    }
)


def _listing(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in folder.iterdir())
    except OSError as error:
        raise SparseLearningError(f"cannot read the run directory {folder}: {error.strerror or error}") from None


def check_usable(run_dir: Path) -> bool:
    """Refuse a run directory that is a file, a link, or a folder holding files this project did not write.

    :return: whether it already holds a run (False for a missing or empty folder)
    """
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise SparseLearningError(f"the run directory {run_dir} is a symbolic link; give the real folder")
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise SparseLearningError(f"the run directory {run_dir} is not a directory")
    entries = _listing(run_dir)
    if not entries:
        return False
    links = [name for name in entries if (run_dir / name).is_symlink()]
    if links:
        raise SparseLearningError(
            f"the run directory {run_dir} holds symbolic links ({', '.join(links[:5])}); a run never writes "
            "through links: remove them or give another hydra.run.dir"
        )
    foreign = [name for name in entries if name not in RUN_ENTRIES and not name.startswith(".")]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise SparseLearningError(
            f"the run directory {run_dir} is not empty and not a sparselearning run (it holds {shown}); "
            "give a new or empty folder as hydra.run.dir"
        )
    return True


def stored_settings(run_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """The identity settings a run directory was made with, and whether they are inferred (lenient).

    `identity.json` holds them exactly; a run written before identities were stored has only its
    `config.yaml`, read as plain data. (None, False) when the directory holds neither.
    """
    run_dir = Path(run_dir)
    identity_path = run_dir / IDENTITY
    if identity_path.exists() or identity_path.is_symlink():
        try:
            record = json.loads(files.read_text(identity_path, limit=4 * 1024 * 1024))
        except (json.JSONDecodeError, RecursionError) as error:
            raise SparseLearningError(f"cannot read {identity_path}: {error}") from None
        settings = record.get("settings") if isinstance(record, dict) else None
        if not isinstance(settings, dict):
            raise SparseLearningError(f"{identity_path} holds no settings; move the run directory aside")
        return settings, False
    config_path = run_dir / CONFIG
    if config_path.exists() or config_path.is_symlink():
        config = files.read_yaml_data(config_path)
        if not isinstance(config, dict):
            raise SparseLearningError(f"{config_path} does not hold a configuration")
        return run_settings(config), True
    return None, False


def check_identity(run_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to train in `run_dir` when it holds a run made with other settings, naming them."""
    stored, lenient = stored_settings(run_dir)
    if stored is None:
        return
    found = differences(stored, settings, lenient=lenient)
    if found:
        raise SparseLearningError(
            f"{run_dir} holds a run made with other settings: {describe_differences(found)}; "
            "results belong to the settings that made them, so give this run its own hydra.run.dir "
            "(the default directory names every setting) or delete the old run to start it over"
        )


def identity_record(settings: dict[str, Any], group: str, directory: str) -> dict[str, Any]:
    """What `identity.json` (and every checkpoint and summary) stores about a run's identity."""
    return {"format": IDENTITY_FORMAT, "settings": settings, "group_hash": group, "settings_hash": directory}


class RunLock:
    """An exclusive lock on a run directory, held while a process trains in it.

    A second process on the same directory fails at once with one line instead of interleaving its files.
    The lock is an OS file lock, released by the kernel when its holder dies, so a killed run leaves no
    stale lock behind.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._stream: IO[str] | None = None

    def acquire(self) -> RunLock:
        files.prepare(self.path, self.path.parent)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(self.path, flags, 0o644)
        except OSError as error:
            raise SparseLearningError(f"cannot lock {self.path}: {error.strerror or error}") from None
        stream = os.fdopen(descriptor, "r+", encoding="utf-8")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = stream.read().strip() or "another process"
            stream.close()
            raise SparseLearningError(
                f"{self.path.parent} is in use: process {holder} is training in it; wait for it to finish, "
                "or give this run another hydra.run.dir"
            ) from None
        stream.seek(0)
        stream.truncate()
        stream.write(str(os.getpid()))
        stream.flush()
        self._stream = stream
        return self

    def release(self) -> None:
        if self._stream is not None:
            self._stream.close()  # closing the descriptor drops the lock
            self._stream = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
