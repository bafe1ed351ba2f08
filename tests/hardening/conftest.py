"""Shared pieces of the hardening tests: the command run in-process, earlier finished runs, file snapshots."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sparselearning.cli import main
from sparselearning.runs.directory import LOCK
from tests.train.conftest import SMALL

# Hydra's own records of an invocation: rewritten by every run into the same directory (see test_bad_input).
HYDRA_RECORDS = ".hydra/"
# Hydra's job log: a later invocation may append to it, never rewrite it.
JOB_LOG = "app.log"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine OpenMP threads that spin-wait make tiny steps 20x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_cli(arguments: list[str]) -> int:
    """`sparselearning.cli.main(arguments)` in this process; returns the exit status (0 when it returns).

    The CLI hands its arguments to Hydra through `sys.argv`, and Hydra points the root logger at the run's
    `app.log` and at the current stdout: both are put back afterwards, so later tests log where they expect.
    """
    saved_argv = list(sys.argv)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        main(arguments)
    except SystemExit as stopped:
        code = stopped.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved_argv
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
    return 0


def train_command(run_dir: Path, *overrides: str) -> list[str]:
    return ["train", *SMALL, *overrides, f"hydra.run.dir={run_dir}"]


Snapshot = dict[str, tuple[int, bytes]]


def snapshot(root: Path) -> Snapshot:
    """Every file under `root`: relative path -> (mtime in ns, bytes); the trainer's lock file (`.lock`,
    which holds the pid of the last process that took it) is not a result and is left out."""
    return {
        path.relative_to(root).as_posix(): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != LOCK
    }


def assert_nothing_lost(before: Snapshot, after: Snapshot) -> None:
    """No file appeared, vanished or changed (bytes and mtime), except Hydra's records; the job log only grew."""

    def ours(files: Snapshot) -> set[str]:
        return {name for name in files if not name.startswith(HYDRA_RECORDS)}

    assert ours(after) == ours(before), "files appeared or vanished"
    for name in ours(before):
        if name == JOB_LOG:
            assert after[name][1].startswith(before[name][1]), "the job log was rewritten"
            continue
        assert after[name] == before[name], f"{name} changed"


@dataclass(frozen=True)
class EarlierRuns:
    """Finished runs made before a test, through the command line: each test must leave them as they were."""

    rigl: Path  # lenet300-100, RigL (the default method) on the small Synthetic set
    lenet5: Path  # lenet5, same method and data

    def snapshots(self) -> dict[Path, Snapshot]:
        return {self.rigl: snapshot(self.rigl), self.lenet5: snapshot(self.lenet5)}


@pytest.fixture(scope="session")
def earlier_runs(tmp_path_factory: pytest.TempPathFactory) -> EarlierRuns:
    root = tmp_path_factory.mktemp("earlier")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = EarlierRuns(rigl=root / "rigl", lenet5=root / "lenet5")
        assert run_cli(train_command(runs.rigl)) == 0
        assert run_cli(train_command(runs.lenet5, "model=lenet5")) == 0
    finally:
        torch.set_num_threads(previous)
    for run in (runs.rigl, runs.lenet5):
        assert (run / "summary.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    return runs


@pytest.fixture
def unchanged(earlier_runs: EarlierRuns) -> Iterator[Callable[[], None]]:
    """Call the returned check after the action under test: the earlier runs lost nothing. With
    `hydra_records=True` even Hydra's `.hydra/` files and `app.log` must be untouched (input refused before
    Hydra starts)."""
    before = earlier_runs.snapshots()

    def check(hydra_records: bool = False) -> None:
        for root, files in before.items():
            assert_nothing_lost(files, snapshot(root))
            if hydra_records:
                assert snapshot(root) == files

    yield check
