"""Finding the runs under the paths given to `sparselearning report` and loading what a report needs of them.

A run directory is one that holds `summary.json` (the loop writes it last, so its presence means the run
finished). A directory that looks like a run (its own `config.yaml`, a `metrics.jsonl`, Hydra's `.hydra/` or
a `checkpoints/` folder) but has no readable summary is an unfinished or broken run: it is listed as skipped
so the report says what it left out, rather than failing the whole report.

Everything read here comes from files anyone can write, so one bad run never stops the report: files are
read with `sparselearning.runs.files.read_text` (a FIFO or device is refused unopened, sizes are bounded),
JSON nested too deep or YAML too large is refused, configurations are plain data (no interpolation, no
resolvers: `${oc.env:...}` stays text), and every value is checked (`sparselearning.report.validate`). A run
that fails any of these is skipped with one line saying why. What is kept of a run is small: its scalar
summary fields, its per-layer densities, its identity settings and three per-epoch curves, so memory stays
proportional to the number of runs, not to the size of their logs.
"""

from __future__ import annotations

import json
import math
import os
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparselearning import method_table
from sparselearning.errors import SparseLearningError, first_line, one_line
from sparselearning.report.validate import check_settings, check_summary
from sparselearning.runs.files import read_text, read_yaml_data
from sparselearning.runs.identity import run_settings

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CONFIGS = ("config.yaml", ".hydra/config.yaml")
MAX_SUMMARY_BYTES = 2 * 1024 * 1024
MAX_METRICS_BYTES = 16 * 1024 * 1024
# A configuration is a few hundred values; YAML aliases can make a small file expand to billions of them.
MAX_CONFIG_NODES = 100_000
MAX_EPOCH = 2**31 - 1
# Sub-folders a run writes itself; nothing below them can be another run.
_RUN_OUTPUTS = frozenset({"checkpoints", "plots", "tensorboard"})
ERK = "erdos-renyi-kernel"
# The per-epoch series the figures draw, by split; each is a fraction in [0, 1].
CURVE_KEYS = {"val": ("accuracy",), "masks": ("turnover", "itop_rate")}
# A metrics line can only hold one of those splits if it contains one of these strings.
_CURVE_MARKERS = tuple(f'"{split}"' for split in CURVE_KEYS)

Curve = tuple[array, array]  # (epochs, values), one value per epoch (the last one logged)


def method_variant(method: str, sparse_init: str | None, redistribution_mode: str | None) -> str:
    """The name a run is reported under: the method, plus what changes its results but not its name.

    "RigL" with ERK initial densities becomes "RigL (ERK)"; a dynamic method whose table entry redistributes
    nothing (RigL, SET, ...) but that ran with redistribution (momentum, say) gets " (momentum redist.)"
    appended. Runs that differ in any other setting are told apart by their row label
    (`sparselearning.report.grouping`).
    """
    name = str(method)
    if sparse_init == ERK:
        name += " (ERK)"
    entry = method_table.table.get(method)  # a method not registered in this process: no suffix
    usual = entry.redistribution_mode if entry is not None and entry.kind == method_table.DYNAMIC else None
    if usual == "none" and redistribution_mode not in (None, "", "none"):
        name += f" ({redistribution_mode} redist.)"
    return name


@dataclass
class RunRecord:
    """One finished run: its checked summary, the two settings that name its variant, its identity settings
    and its per-epoch curves; `row` and `group` are set by `grouping.assign_rows`."""

    run_dir: Path
    summary: dict[str, Any]
    sparse_init: str | None = None
    redistribution_mode: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    curves: dict[tuple[str, str], Curve] = field(default_factory=dict)
    row: str | None = None
    group: str | None = None

    @property
    def method(self) -> str:
        return str(self.summary["method"])

    @property
    def variant(self) -> str:
        """The method variant (see `method_variant`)."""
        return method_variant(self.method, self.sparse_init, self.redistribution_mode)

    @property
    def row_name(self) -> str:
        """The row name in tables and the legend entry (and colour) in figures."""
        return self.row or self.variant

    @property
    def dataset_model(self) -> tuple[str, str]:
        """(dataset, model): runs are only compared within one such pair."""
        return str(self.summary["dataset"]), str(self.summary["model"])

    @property
    def density_key(self) -> float:
        """The column a run falls in: its target density, or its measured one where no target was set
        (Lottery takes its density from saved masks), rounded so that float noise does not split columns."""
        target = self.summary.get("target_density")
        value = target if _is_number(target) else self.summary.get("density")
        if not isinstance(value, (int, float)) or not _is_number(value):
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


def _exists(path: Path) -> bool:
    """Whether anything (a broken link included) is at `path`, without opening it."""
    return os.path.lexists(path)


def _count_nodes(data: Any, limit: int) -> None:
    """Refuse data with more than `limit` values in all, counting every alias again (a YAML alias bomb)."""
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise SparseLearningError(f"it holds more than {limit} values")
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def read_config(path: Path) -> Any:
    """A configuration file as bounded plain data; one `SparseLearningError` line when it is unusable."""
    data = read_yaml_data(path)
    try:
        _count_nodes(data, MAX_CONFIG_NODES)
    except SparseLearningError as error:
        raise SparseLearningError(f"cannot read {path}: {error}") from None
    return data


def _looks_like_run(folder: Path, files: set[str], dirs: set[str]) -> bool:
    """Whether a folder without summary.json is a run that did not finish (rather than a folder of runs)."""
    if METRICS in files or ".hydra" in dirs or "checkpoints" in dirs:
        return True
    if "config.yaml" in files:
        try:
            config = read_config(folder / "config.yaml")
        except SparseLearningError:
            return False
        return isinstance(config, Mapping) and "masking" in config
    return False


def find_run_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """(finished, unfinished) run directories under `root` (itself included), each sorted.

    The search does not descend into a finished run (its checkpoints and plots hold no runs), into hidden
    folders such as Hydra's `.hydra/`, nor through symbolic links. A folder that looks like an unfinished
    run but holds runs below it is a folder of runs after all, and is not reported. Linear in the number of
    folders: each found run marks its ancestors once.
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
    holds_runs: set[Path] = set()
    for found in (*finished, *candidates):
        for parent in found.parents:
            if parent in holds_runs:
                break  # its ancestors up to `root` are marked already
            holds_runs.add(parent)
            if parent == root:
                break
    unfinished = [candidate for candidate in candidates if candidate not in holds_runs]
    return sorted(finished), sorted(unfinished)


def _settings_from_config(run_dir: Path) -> dict[str, Any]:
    """The identity settings of a run whose summary predates them: its config.yaml as data, through
    `run_settings` (one process); empty when the run has no configuration at all."""
    for name in CONFIGS:
        path = run_dir / name
        if not _exists(path):
            continue
        config = read_config(path)
        if not isinstance(config, Mapping):
            raise SparseLearningError(f"{path} does not hold a mapping of settings")
        try:
            settings = run_settings(config)
        except RecursionError:
            raise SparseLearningError(f"cannot read {path}: it is nested too deeply") from None
        return check_settings(settings, f"the settings of {path}")
    return {}


def _setting_text(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    return None if value is None else str(value)


def _curve_point(record: dict[str, Any], line_number: int) -> list[tuple[tuple[str, str], int, float]]:
    """The (series, epoch, value) points of one metrics record; a value outside [0, 1] is refused."""
    split, epoch = record.get("split"), record.get("epoch")
    if split not in CURVE_KEYS or isinstance(epoch, bool) or not isinstance(epoch, int):
        return []
    if not 0 <= epoch <= MAX_EPOCH:
        raise SparseLearningError(f"{METRICS} line {line_number}: epoch must be in [0, {MAX_EPOCH}], got {epoch}")
    points = []
    for key in CURVE_KEYS[split]:
        value = record.get(key)
        if value is None or isinstance(value, str):  # absent, or NaN written as text by the logger
            continue
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            shown = repr(value)[:60]
            raise SparseLearningError(f"{METRICS} line {line_number}: {split} {key} must be in [0, 1], got {shown}")
        points.append(((split, key), epoch, float(value)))
    return points


def read_curves(path: Path) -> dict[tuple[str, str], Curve]:
    """The per-epoch validation accuracy, turnover and ITOP rate of a `metrics.jsonl` (the last value of an
    epoch counts); lines a crash cut short, or that cannot be parsed, are passed over. No file, no curves."""
    if not _exists(path):
        return {}
    text = read_text(path, MAX_METRICS_BYTES)
    last: dict[tuple[str, str], dict[int, float]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not any(marker in line for marker in _CURVE_MARKERS):
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            for series, epoch, value in _curve_point(record, number):
                last.setdefault(series, {})[epoch] = value
    curves = {}
    for series, values in last.items():
        epochs = sorted(values)
        curves[series] = (array("q", epochs), array("d", (values[e] for e in epochs)))
    return curves


def load_run(run_dir: Path) -> RunRecord:
    """Read one finished run; raises `SparseLearningError` (one line) when anything of it is unusable."""
    path = run_dir / SUMMARY
    text = read_text(path, MAX_SUMMARY_BYTES)
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise SparseLearningError(f"cannot read {path}: {first_line(error)}") from None
    try:
        scalars, layers, settings = check_summary(raw)
    except SparseLearningError as error:
        raise SparseLearningError(f"{SUMMARY}: {error}") from None
    if settings is None:
        settings = _settings_from_config(run_dir)
    settings = {sys.intern(key): value for key, value in settings.items()}
    summary = {**scalars, "layer_density": layers}
    curves = read_curves(run_dir / METRICS)
    sparse_init = _setting_text(settings, "masking.sparse_init")
    redistribution = _setting_text(settings, "masking.redistribution_mode")
    return RunRecord(run_dir, summary, sparse_init, redistribution, settings, curves)


def _resolve_input(path: str | Path) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.exists():
        raise SparseLearningError(f"no such file or directory: {path}")
    if candidate.is_file():
        if candidate.name == SUMMARY:
            return candidate.parent.resolve()
        raise SparseLearningError(f"{path} is a file; give a run directory or a folder of runs (a sweep)")
    if not candidate.is_dir():
        raise SparseLearningError(f"{path} is not a folder; give a run directory or a folder of runs (a sweep)")
    return candidate.resolve()


def collect_runs(paths: Iterable[str | Path]) -> Collection:
    """Every run under `paths`, loaded; a path that is missing or holds no run raises `SparseLearningError`.

    Runs without a (readable, valid) summary are returned as skipped, with the reason. A directory reached
    from two of the paths is read once. At least one finished run is required.
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
            except (SparseLearningError, OSError, RecursionError, MemoryError) as error:
                skipped.append(SkippedRun(run_dir, one_line(first_line(error))))
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
