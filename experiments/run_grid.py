"""Run an experiment grid resumably, a few `sparselearning train` processes at a time.

    .venv/bin/python -m experiments.run_grid experiments/grids/mnist_lenet300_100.yaml --dry-run
    .venv/bin/python -m experiments.run_grid experiments/grids/mnist_lenet300_100.yaml --jobs 2 \\
        [--densities 0.05,0.02] [--methods RigL_ERK,SNFS] [--seeds 0] [--epochs N]

A run whose `summary.json` exists is skipped, so the same command continues an interrupted grid (an
interrupted run resumes from its last epoch). Runs that restart from another run's masks (Lottery after
Pruning) wait for it. Each run's output goes to `train.log` in its run directory.

Each run gets cores // jobs intra-op threads unless OMP_NUM_THREADS is set. The split assumes the grid has the
machine to itself: to run a second grid beside one already running, set OMP_NUM_THREADS=1 for it (on 2 cores, a
two-thread MNIST run beside two one-thread runs went about 8x slower than a one-thread run in its place). The
thread count also changes floating-point sums, so a run is reproduced bit for bit only with the thread count it had.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sparselearning.errors import SparseLearningError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class PlannedRun:
    """One run of the grid: its name, overrides, directory, and the run it waits for (if any)."""

    method: str
    density: float | None
    seed: int
    overrides: list[str]
    run_dir: Path
    after: Path | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.run_dir / "train.log"

    @property
    def done(self) -> bool:
        return (self.run_dir / "summary.json").exists()


def _method_spec(spec: object) -> tuple[list[str], bool, str | None]:
    if isinstance(spec, list):
        return [str(item) for item in spec], False, None
    if isinstance(spec, dict):
        return [str(item) for item in spec["overrides"]], bool(spec.get("dense", False)), spec.get("after")
    raise ValueError(f"a method is a list of overrides or a mapping with 'overrides', got {spec!r}")


def _chosen(kind: str, wanted: list | None, available: list) -> list:
    """The grid's `available` values that `wanted` names (all when None); naming one the grid lacks is an error."""
    if wanted is None:
        return list(available)
    unknown = [value for value in wanted if value not in available]
    if unknown:
        allowed = ", ".join(str(value) for value in available)
        raise SparseLearningError(f"--{kind} {','.join(map(str, unknown))} not in this grid; allowed: {allowed}")
    return [value for value in available if value in wanted]


def plan(grid_file: Path, densities=None, methods=None, seeds=None, epochs: int | None = None) -> list[PlannedRun]:
    """Expand a grid file into runs, in priority order (density, then method, then seed)."""
    if not Path(grid_file).is_file():
        raise SparseLearningError(f"no grid file {grid_file}; the grids are {REPO / 'experiments' / 'grids'}/*.yaml")
    grid = yaml.safe_load(Path(grid_file).read_text())
    output = REPO / grid["output"]
    common = [str(item) for item in grid["common"]]
    if epochs is not None:
        common.append(f"optimizer.epochs={epochs}")
    chosen_seeds = _chosen("seeds", seeds, grid["seeds"])
    chosen_densities = _chosen("densities", densities, grid["densities"])
    _chosen("methods", methods, list(grid["methods"]))
    runs: list[PlannedRun] = []
    specs = {name: _method_spec(spec) for name, spec in grid["methods"].items()}
    for name, (overrides, dense, _after) in specs.items():
        if dense and (methods is None or name in methods):
            for seed in chosen_seeds:
                run_dir = output / name / f"seed_{seed}"
                runs.append(PlannedRun(name, None, seed, [*common, *overrides, f"seed={seed}"], run_dir))
    for density in chosen_densities:
        for name, (overrides, dense, after) in specs.items():
            if dense or (methods is not None and name not in methods):
                continue
            for seed in chosen_seeds:
                run_dir = output / name / f"density_{density}" / f"seed_{seed}"
                extra = [f"masking.density={density}"] if name != "Lottery" else []
                waits_for = output / after / f"density_{density}" / f"seed_{seed}" if after else None
                if waits_for is not None:  # relative: runs start in the repository, and records travel
                    extra.append(f"masking.lottery_mask_path={_from_repo(waits_for)}")
                runs.append(
                    PlannedRun(name, density, seed, [*common, *overrides, *extra, f"seed={seed}"], run_dir, waits_for)
                )
    return runs


def _from_repo(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (every run starts there), else absolute."""
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def _command(run: PlannedRun) -> list[str]:
    arguments = [*run.overrides, f"hydra.run.dir={_from_repo(run.run_dir)}"]
    return [sys.executable, "-m", "sparselearning", "train", *arguments]


def _environment(jobs: int) -> dict[str, str]:
    """Share the cores between the concurrent runs (unless the caller set a thread count)."""
    environment = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    environment.setdefault("OMP_NUM_THREADS", str(threads))
    return environment


def execute(runs: list[PlannedRun], jobs: int) -> int:
    """Run everything not done yet, `jobs` at a time; returns the number of failed runs."""
    environment = _environment(jobs)
    pending = [run for run in runs if not run.done]
    planned_dirs = {run.run_dir for run in runs}
    running: list[tuple[PlannedRun, subprocess.Popen]] = []
    failed = 0
    while pending or running:
        for run, process in list(running):
            if process.poll() is not None:
                running.remove((run, process))
                status = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode}, see {run.log})"
                failed += process.returncode != 0
                print(
                    f"[{time.strftime('%H:%M:%S')}] {run.method} density={run.density} seed={run.seed}: {status}",
                    flush=True,
                )
        ready = [
            r for r in pending if r.after is None or (r.after / "summary.json").exists() or r.after not in planned_dirs
        ]
        while ready and len(running) < jobs:
            run = ready.pop(0)
            pending.remove(run)
            run.run_dir.mkdir(parents=True, exist_ok=True)
            with run.log.open("a") as log:
                process = subprocess.Popen(
                    _command(run), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=environment
                )
            running.append((run, process))
            print(
                f"[{time.strftime('%H:%M:%S')}] started {run.method} density={run.density} seed={run.seed}", flush=True
            )
        if not ready and not running and pending:
            print(f"{len(pending)} runs wait for runs that failed or were filtered out", flush=True)
            break
        time.sleep(2)
    return failed


def _numbers(option: str, text: str | None, kind=float):
    try:
        return None if text is None else [kind(item) for item in text.split(",")]
    except ValueError:
        raise SparseLearningError(f"--{option} takes comma-separated {kind.__name__}s, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--densities")
    parser.add_argument("--methods")
    parser.add_argument("--seeds")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (for quick checks)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done")
    args = parser.parse_args(argv)
    try:
        runs = plan(
            args.grid,
            _numbers("densities", args.densities),
            None if args.methods is None else args.methods.split(","),
            _numbers("seeds", args.seeds, int),
            args.epochs,
        )
    except SparseLearningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            state = "done" if run.done else "todo"
            print(f"{state}  {run.method:<12} density={run.density!s:<5} seed={run.seed}  {run.run_dir}")
        print(f"{len(runs)} runs, {sum(r.done for r in runs)} done")
        return 0
    return 1 if execute(runs, args.jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
