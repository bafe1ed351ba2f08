"""Reading and writing the files of a run directory safely.

Writes are atomic (a temporary file in the same folder, fsync, rename), never go through a symbolic link
(a link where a run file or one of its folders should be is refused, so a planted link cannot redirect a
write outside the run directory), and a failed write (a full disk, a file-size limit) leaves the earlier
file in place and surfaces as one `SparseLearningError` line.

Reads of small text files refuse anything that is not a regular file (a FIFO would block forever) or is
larger than a bound, and YAML is parsed as plain data: no tags, no interpolation, no resolvers.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from sparselearning.errors import SparseLearningError, first_line

MAX_TEXT_BYTES = 16 * 1024 * 1024
# libyaml's safe loader where PyYAML was built with it (about 8x faster), else the pure-Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once, at import: flipping the umask on every write would briefly give files that other threads (the
# TensorBoard writer) create at that moment world-writable permissions.
_UMASK = _read_umask()


def _reason(error: BaseException) -> str:
    """An OS error's own words ("No space left on device") without the errno and path, else its message."""
    return first_line(error, text=getattr(error, "strerror", None) or None)


def check_no_links(path: Path, root: Path) -> None:
    """Refuse `path` when it, or any folder between `root` and it, is a symbolic link."""
    path, root = Path(path), Path(root)
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise SparseLearningError(f"refusing to write {path}: it is outside the run directory {root}") from None
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise SparseLearningError(
                f"refusing to write {path}: {current} is a symbolic link (a run never writes through links)"
            )


def prepare(path: Path, root: Path | None) -> Path:
    """Check `path` against links under `root` (its parent when None) and create its folder."""
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    check_no_links(path, base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SparseLearningError(f"cannot create {path.parent}: {_reason(error)}") from None
    check_no_links(path, base)
    return path


def write_atomic(path: Path, write: Callable[[IO[bytes]], object], root: Path | None = None) -> None:
    """Write `path` through `write(stream)` into a temporary file, fsync, then rename it over `path`.

    A crash, a full disk or an exception leaves the earlier file as it was; the temporary file is removed.
    Renaming replaces a link itself, never its target, and `root` bounds where the file may go.
    """
    path = prepare(path, root)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise SparseLearningError(f"cannot write {path}: {_reason(error)}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; a run's files are ordinary files
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a failed write as RuntimeError
        Path(temporary).unlink(missing_ok=True)
        raise SparseLearningError(f"cannot write {path}: {_reason(error)}; the earlier file is kept") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, root: Path | None = None) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")), root)


def open_append(path: Path, root: Path | None = None) -> IO[str]:
    """Open `path` for appending text, refusing a link (O_NOFOLLOW) and anything but a regular file."""
    path = prepare(path, root)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        raise SparseLearningError(f"cannot append to {path}: {_reason(error)}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise SparseLearningError(f"cannot append to {path}: it is not a regular file")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of a regular file of at most `limit` bytes; special files and links to them are refused
    without opening them (a FIFO would block), and unreadable files are one error line."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as error:
        raise SparseLearningError(f"cannot read {path}: {_reason(error)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SparseLearningError(f"cannot read {path}: it is not a regular file")
    if info.st_size > limit:
        raise SparseLearningError(f"cannot read {path}: {info.st_size} bytes is more than the {limit} allowed")
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as stream:
            data = stream.read(limit + 1)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SparseLearningError(f"cannot read {path}: {_reason(error)}") from None


def load_yaml_data(text: str, what: str) -> Any:
    """YAML as plain data (`yaml.safe_load`): no object tags; `${...}` stays a literal string.

    Aliases are refused: a configuration never needs them, and nested aliases (a "billion laughs" file)
    expand exponentially in anything that walks the data.
    """
    try:
        aliased = any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=_SAFE_LOADER))
        if not aliased:
            return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader: plain data only
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        raise SparseLearningError(f"cannot read {what}: {_reason(error)}") from None
    raise SparseLearningError(f"cannot read {what}: YAML aliases (*name) are not allowed in a run's files")


def read_yaml_data(path: Path) -> Any:
    """A YAML file (a run's `config.yaml`) as plain data; see `load_yaml_data`."""
    return load_yaml_data(read_text(path), str(path))
