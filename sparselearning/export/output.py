"""Where an export may write, and writing it all or nothing.

`export` reads a training run and writes one new file. It must never damage what it reads, so an `--out`
that is the checkpoint being exported, or any existing file of that run (its other checkpoints, config.yaml,
summary.json, ...), is refused, comparing real paths so that `..` or a linked folder cannot hide it. An `--out`
that is itself a symbolic link is refused too: writing through it would land wherever the link points.

The file is first written under a temporary name in the same folder and moved over `--out` (one atomic
rename) only after the caller's checks pass, so a failure at any point leaves either no file or the earlier
file of that name, never a partial or unchecked one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sparselearning.errors import SparseLearningError
from sparselearning.io import blocking_ancestor


def check_writable(out: str | os.PathLike[str]) -> Path:
    """Fail before any work when `out` cannot be written: a link, a directory, another non-regular file
    (a device, a FIFO), or a path under a file or a read-only folder."""
    target = Path(out)
    if target.is_symlink():
        raise SparseLearningError(
            f"refusing to write {target}: it is a symbolic link, and writing through it would change the file "
            "it points to; name a plain file"
        )
    if target.is_dir():
        raise SparseLearningError(f"cannot write {target}: it is a directory")
    if target.exists() and not target.is_file():  # a device or FIFO: a rename would replace the node itself
        raise SparseLearningError(f"refusing to write {target}: it exists and is not a regular file")
    blocker = blocking_ancestor(target.parent)
    if blocker is not None:
        raise SparseLearningError(f"cannot write {target}: {blocker} is not a writable directory")
    return target


def check_output(out: str | os.PathLike[str], checkpoint: Path, run_dir: Path | None) -> Path:
    """`out` when an export may write it: `check_writable`, and neither the checkpoint being exported nor an
    existing file of its run directory (real paths are compared)."""
    target = check_writable(out)
    real = target.resolve()
    if real == checkpoint.resolve():
        raise SparseLearningError(
            f"refusing to write {target}: it is the checkpoint being exported; name a new file for --out"
        )
    if run_dir is not None and target.exists() and real.is_relative_to(run_dir.resolve()):
        raise SparseLearningError(
            f"refusing to write {target}: it is a file of the run {run_dir} being exported; export never replaces "
            "a run's own files (a new file name inside the run is fine)"
        )
    return target


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """A temporary file beside `target`, renamed over `target` when the block succeeds and removed otherwise.

    Errors from the file system (a full disk, a vanished folder) become one `SparseLearningError`; the
    earlier file at `target`, if any, is kept on every failure.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(handle)
    except OSError as error:
        raise SparseLearningError(f"cannot write {target}: {error.strerror or error}") from None
    staged = Path(name)
    try:
        yield staged
        os.replace(staged, target)
        _sync_folder(target.parent)
    except OSError as error:
        raise SparseLearningError(f"cannot write {target}: {error.strerror or error}; nothing was replaced") from None
    finally:
        staged.unlink(missing_ok=True)
