"""Time and peak memory of `sparselearning report` on many small runs and on one run with very many layers.

    .venv/bin/python -m benchmarks.report_scale                  # 10,000 runs, then the layer cases
    .venv/bin/python -m benchmarks.report_scale --runs 2000      # fewer runs
    .venv/bin/python -m benchmarks.report_scale --legacy         # summaries without settings (config.yaml read)

The runs are written straight to a temporary folder (no training): 5 methods x 4 densities x as many seeds as
it takes, each with a summary.json like the training loop's (its identity settings included, unless
`--legacy`), a config.yaml and a 5-epoch metrics.jsonl. The report runs in a fresh process, so the figures
are its wall time (Python start and imports included) and its peak resident set size (`ru_maxrss`). Then
one run with `--layers` entries in layer_density (refused: more than the report's limit) and one at the
limit are reported beside a normal run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparselearning.report.validate import MAX_LAYERS
from sparselearning.runs.identity import run_settings

METHODS = ("SET", "RigL", "SNFS", "Static", "Dense")
DENSITIES = (0.01, 0.02, 0.05, 0.1)
EPOCHS = 5


def config(method: str, density: float, seed: int) -> dict:
    """A configuration shaped like the ones runs store (the parts that matter to a report)."""
    return {
        "dataset": {"name": "MNIST", "root": None, "batch_size": 100, "test_batch_size": 1000, "val_fraction": 0.1},
        "model": {"name": "lenet300-100"},
        "optimizer": {"name": "SGD", "epochs": EPOCHS, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005},
        "masking": {
            "name": method,
            "density": density,
            "sparse_init": "erdos-renyi-kernel" if method == "RigL" else "random",
            "growth_mode": "absolute-gradient",
            "prune_mode": "magnitude",
            "redistribution_mode": "none",
            "prune_rate": 0.3,
            "interval": 100,
        },
        "exp_name": "${masking.name}",
        "seed": seed,
        "log_interval": 100,
    }


def _yaml(data: dict, indent: str = "") -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_yaml(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {'null' if value is None else value}")
    return "\n".join(lines)


def summary(method: str, density: float, seed: int, layers: int = 3, legacy: bool = False) -> dict:
    """A summary.json shaped like the training loop's."""
    accuracy = 0.97 + 0.001 * ((seed * 7 + int(density * 100)) % 10)
    content = {
        "method": method,
        "dataset": "MNIST",
        "model": "lenet300-100",
        "seed": seed,
        "epochs": EPOCHS,
        "steps": 2700,
        "target_density": density,
        "density": density,
        "active_weights": int(266200 * density),
        "masked_weights": 266200,
        "test_accuracy": accuracy,
        "test_top5": 0.999,
        "test_loss": 0.08,
        "val_accuracy": accuracy,
        "best_val_accuracy": accuracy,
        "inference_flops": density,
        "train_flops": density * 1.3,
        "itop_rate": 0.05,
        "wall_time_s": 12.5,
        "layer_density": {f"layers.{2 * i}.weight": density for i in range(layers)},
    }
    if not legacy:
        content["settings"] = run_settings(config(method, density, seed))
    return content


def metrics() -> str:
    """A 5-epoch metrics.jsonl: two train lines, a masks line and a val line per epoch."""
    lines = []
    for epoch in range(1, EPOCHS + 1):
        for step in (1, 2):
            lines.append({"split": "train", "step": epoch * 540 + step, "epoch": epoch, "loss": 0.3, "accuracy": 0.9})
        lines.append({"split": "masks", "step": epoch * 540, "epoch": epoch, "turnover": 0.1, "itop_rate": 0.05})
        lines.append({"split": "val", "step": epoch * 540, "epoch": epoch, "loss": 0.1, "accuracy": 0.97})
    return "".join(json.dumps(line) + "\n" for line in lines)


def write_run(folder: Path, method: str, density: float, seed: int, layers: int = 3, legacy: bool = False) -> None:
    """One finished run directory."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(_yaml(config(method, density, seed)) + "\n")
    (folder / "metrics.jsonl").write_text(metrics())
    (folder / "summary.json").write_text(json.dumps(summary(method, density, seed, layers, legacy)))


def write_sweep(root: Path, runs: int, legacy: bool = False) -> None:
    """`runs` run directories under `root`, laid out as METHOD/density_D/seed_S."""
    cells = [(method, density) for method in METHODS for density in DENSITIES]
    for index in range(runs):
        method, density = cells[index % len(cells)]
        seed = index // len(cells)
        write_run(root / method / f"density_{density}" / f"seed_{seed}", method, density, seed, legacy=legacy)


def run_report(paths: list[Path], out: Path) -> tuple[float, float, int, str, str]:
    """(seconds, peak MiB, exit status, stdout, stderr) of `sparselearning report PATHS --out OUT` in a fresh
    process; the peak is that process's own (`os.wait4`)."""
    command = [sys.executable, "-m", "sparselearning", "report", *map(str, paths), "--out", str(out)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return seconds, usage.ru_maxrss / 1024, process.returncode, stdout.read(), stderr.read()


def _show(what: str, seconds: float, peak: float, status: int, stdout: str, stderr: str) -> None:
    print(f"{what}: {seconds:.1f} s, peak RSS {peak:.0f} MiB, exit {status}")
    print("  " + (stdout.strip().splitlines() or ["(no output)"])[-1])
    for line in stderr.strip().splitlines()[:3]:
        print("  stderr: " + line[:200])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="number of small runs (default 10000)")
    parser.add_argument("--layers", type=int, default=20_000, help="layer_density entries of the large run")
    parser.add_argument("--legacy", action="store_true", help="summaries without settings: config.yaml is read")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="report_scale_") as folder:
        root = Path(folder)
        start = time.perf_counter()
        write_sweep(root / "sweep", arguments.runs, arguments.legacy)
        print(f"wrote {arguments.runs} runs in {time.perf_counter() - start:.1f} s")
        _show(f"report of {arguments.runs} runs", *run_report([root / "sweep"], root / "out"))
        for layers in (arguments.layers, MAX_LAYERS):
            wide = root / f"wide_{layers}"
            write_run(wide / "normal", "SET", 0.1, 0)
            write_run(wide / "wide", "SET", 0.05, 0, layers=layers)
            _show(f"report with one {layers}-layer run", *run_report([wide], root / f"out_{layers}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
