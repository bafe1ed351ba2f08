"""Finding the runs under the paths given to `sparselearning report` and loading what a report needs of them.

A run directory is one that holds `summary.json` (the loop writes it last, so its presence means the run
finished). A directory that looks like a run (its own `config.yaml`, a `metrics.jsonl`, Hydra's `.hydra/` or
a `checkpoints/` folder) but has no readable summary is an unfinished or broken run: it is listed as skipped
so the report says what it left out, rather than failing the whole report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparselearning.errors import SparseLearningError
from sparselearning.train.logs import read_metrics

SUMMARY = "summary.json"
# Keys without which a summary cannot be placed in a table.
REQUIRED_KEYS = ("method", "dataset", "model", "test_accuracy")
# Sub-folders a run writes itself; nothing below them can be another run.
_RUN_OUTPUTS = frozenset({"checkpoints", "plots", "tensorboard"})
ERK = "erdos-renyi-kernel"
_REDISTRIBUTING_METHODS = ("RigL", "RigL_reinit")


def method_variant(method: str, sparse_init: str | None, redistribution_mode: str | None) -> str:
    """The name a run is reported under: the method, plus what changes its results but not its name.

    "RigL" with ERK initial densities becomes "RigL (ERK)"; RigL with redistribution (momentum, say) gets
    " (momentum redist.)" appended, so runs that differ in these settings are never averaged together.
    """
    name = str(method)
    if sparse_init == ERK:
        name += " (ERK)"
    if method in _REDISTRIBUTING_METHODS and redistribution_mode not in (None, "", "none"):
        name += f" ({redistribution_mode} redist.)"
    return name


@dataclass
class RunRecord:
    """One finished run: its summary, the two settings that name its variant, and its metric lines."""

    run_dir: Path
    summary: dict[str, Any]
    sparse_init: str | None = None
    redistribution_mode: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.summary["method"])

    @property
    def variant(self) -> str:
        """The row name in tables and the legend entry (and colour) in figures."""
        return method_variant(self.method, self.sparse_init, self.redistribution_mode)

    @property
    def group(self) -> tuple[str, str]:
        """(dataset, model): runs are only compared within one such group."""
        return str(self.summary["dataset"]), str(self.summary["model"])

    @property
    def density_key(self) -> float:
        """The column a run falls in: its target density, or its measured one where no target was set
        (Lottery takes its density from saved masks), rounded so that float noise does not split columns."""
        target = self.summary.get("target_density")
        value = target if _is_number(target) else self.summary.get("density")
        if not _is_number(value):
            return math.nan
        return float(f"{float(value):.6g}")


@dataclass
class SkippedRun:
    """A directory that looks like a run but cannot be reported, and why."""

    run_dir: Path
    reason: str


@dataclass
class Collection:
    """Everything found under the given paths: finished runs (sorted by path) and skipped directories."""

    paths: list[Path]
    runs: list[RunRecord]
    skipped: list[SkippedRun]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _looks_like_run(folder: Path, files: set[str], dirs: set[str]) -> bool:
    """Whether a folder without summary.json is a run that did not finish (rather than a folder of runs)."""
    if "metrics.jsonl" in files or ".hydra" in dirs or "checkpoints" in dirs:
        return True
    if "config.yaml" in files:
        try:
            config = OmegaConf.load(folder / "config.yaml")
        except Exception:
            return False
        return OmegaConf.is_dict(config) and "masking" in config
    return False


def find_run_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """(finished, unfinished) run directories under `root` (itself included), each sorted.

    The search does not descend into a finished run (its checkpoints and plots hold no runs) nor into hidden
    folders such as Hydra's `.hydra/`. A folder that looks like an unfinished run but holds runs below it is
    a folder of runs after all, and is not reported.
    """
    finished: list[Path] = []
    candidates: list[Path] = []
    for current, dirnames, filenames in os.walk(root):
        folder = Path(current)
        files, dirs = set(filenames), set(dirnames)
        if SUMMARY in files:
            finished.append(folder)
            dirnames[:] = []
            continue
        if _looks_like_run(folder, files, dirs):
            candidates.append(folder)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _RUN_OUTPUTS)
    found = [*finished, *candidates]
    unfinished = [c for c in candidates if not any(other != c and other.is_relative_to(c) for other in found)]
    return sorted(finished), sorted(unfinished)


def _read_config(run_dir: Path) -> tuple[str | None, str | None]:
    """(masking.sparse_init, masking.redistribution_mode) from the run's config, None where not set."""
    for candidate in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if not candidate.is_file():
            continue
        try:
            config = OmegaConf.load(candidate)
            values = []
            for key in ("masking.sparse_init", "masking.redistribution_mode"):
                value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
                values.append(None if value is None else str(value))
            return values[0], values[1]
        except Exception:
            continue
    return None, None


def load_run(run_dir: Path) -> RunRecord:
    """Read one finished run; raises `SparseLearningError` (one line) when its summary is unusable."""
    path = run_dir / SUMMARY
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SparseLearningError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(summary, dict):
        raise SparseLearningError(f"{path} does not hold a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in summary]
    if missing:
        raise SparseLearningError(f"{path} lacks {', '.join(missing)}")
    if not _is_number(summary["test_accuracy"]):
        raise SparseLearningError(f"{path} has no numeric test_accuracy")
    sparse_init, redistribution = _read_config(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    try:
        metrics = read_metrics(metrics_path) if metrics_path.is_file() else []
    except (OSError, UnicodeDecodeError):
        metrics = []
    return RunRecord(run_dir, summary, sparse_init, redistribution, [m for m in metrics if isinstance(m, dict)])


def _resolve_input(path: str | Path) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.exists():
        raise SparseLearningError(f"no such file or directory: {path}")
    if candidate.is_file():
        if candidate.name == SUMMARY:
            return candidate.parent.resolve()
        raise SparseLearningError(f"{path} is a file; give a run directory or a folder of runs (a sweep)")
    return candidate.resolve()


def collect_runs(paths: Iterable[str | Path]) -> Collection:
    """Every run under `paths`, loaded; a path that is missing or holds no run raises `SparseLearningError`.

    Runs without a (readable) summary are returned as skipped. A directory reached from two of the paths is
    read once. At least one finished run is required.
    """
    given_paths = list(paths)
    roots = [_resolve_input(path) for path in given_paths]
    if not roots:
        raise SparseLearningError("no path given; name at least one run directory or sweep folder")
    runs: list[RunRecord] = []
    skipped: list[SkippedRun] = []
    seen: set[Path] = set()
    for given, root in zip(given_paths, roots):
        finished, unfinished = find_run_dirs(root)
        if not finished and not unfinished:
            raise SparseLearningError(f"no runs found under {given} (no {SUMMARY} in it or below it)")
        for run_dir in finished:
            if run_dir in seen:
                continue
            seen.add(run_dir)
            try:
                runs.append(load_run(run_dir))
            except SparseLearningError as error:
                skipped.append(SkippedRun(run_dir, str(error)))
        for run_dir in unfinished:
            if run_dir not in seen:
                seen.add(run_dir)
                skipped.append(SkippedRun(run_dir, f"unfinished: no {SUMMARY}"))
    if not runs:
        where = ", ".join(str(path) for path in given_paths)
        raise SparseLearningError(f"no finished runs under {where}: {len(skipped)} run(s) lack a readable {SUMMARY}")
    runs.sort(key=lambda run: str(run.run_dir))
    skipped.sort(key=lambda item: str(item.run_dir))
    return Collection(roots, runs, skipped)
