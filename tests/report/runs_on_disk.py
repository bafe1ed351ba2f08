"""Hand-made run directories for the report tests: a summary, a config and metric lines, written directly."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparselearning.report.command import main

CONFIG = "masking:\n  name: SET\n  density: 0.1\n  sparse_init: random\noptimizer:\n  lr: 0.1\nseed: 0\n"


def summary(method: str = "SET", accuracy: float = 0.5, density: float | None = 0.1, **extra: Any) -> dict:
    """A small valid summary; `extra` adds or replaces fields."""
    return {
        "method": method,
        "dataset": "MNIST",
        "model": "lenet300-100",
        "seed": 0,
        "target_density": density,
        "density": 0.1 if density is None else density,
        "test_accuracy": accuracy,
        "val_accuracy": accuracy,
        "train_flops": 0.2,
        "inference_flops": 0.1,
        "layer_density": {"fc1.weight": 0.1, "fc2.weight": 0.2},
        **extra,
    }


def settings(lr: float = 0.1, seed: int = 0, density: float = 0.1, **extra: Any) -> dict:
    """Identity settings as a newer summary carries them (flat dotted keys)."""
    return {
        "masking.name": "SET",
        "masking.density": density,
        "masking.sparse_init": "random",
        "optimizer.lr": lr,
        "seed": seed,
        "world_size": 1,
        **extra,
    }


def metric_lines(epochs: int = 2) -> str:
    """metrics.jsonl text: a train, a val and a masks line per epoch."""
    lines = []
    for epoch in range(1, epochs + 1):
        lines.append({"split": "train", "step": 10 * epoch, "epoch": epoch, "loss": 1.0, "accuracy": 0.5})
        lines.append({"split": "masks", "step": 10 * epoch, "epoch": epoch, "turnover": 0.1, "itop_rate": 0.2})
        lines.append({"split": "val", "step": 10 * epoch, "epoch": epoch, "loss": 1.0, "accuracy": 0.4 + 0.1 * epoch})
    return "".join(json.dumps(line) + "\n" for line in lines)


def write_run(
    folder: Path,
    content: dict | str | None = None,
    config: str | None = CONFIG,
    metrics: str | None = None,
) -> Path:
    """A run directory: summary.json (a dict as JSON, a string as it is, None for none), config.yaml and
    metrics.jsonl where given."""
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.yaml").write_text(config)
    if metrics is not None:
        (folder / "metrics.jsonl").write_text(metrics)
    if content is not None:
        text = content if isinstance(content, str) else json.dumps(content)
        (folder / "summary.json").write_text(text)
    return folder


@dataclass
class Outcome:
    """What `sparselearning report` did: exit status, its stdout and stderr lines, and the output folder."""

    status: int
    out: list[str]
    err: list[str]
    folder: Path

    def text(self, name: str) -> str:
        return (self.folder / name).read_text(encoding="utf-8")

    def csv_rows(self) -> list[dict[str, str]]:
        with (self.folder / "runs.csv").open(newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream))

    def table_rows(self) -> dict[str, list[str]]:
        """The first Markdown table of report.md: {row name: its cells}."""
        rows = [line for line in self.text("report.md").splitlines() if line.startswith("| ")]
        cells = [[cell.strip() for cell in row.strip("| ").split(" | ")] for row in rows[2:]]
        return {row[0]: row[1:] for row in cells}


def report(*arguments: str | Path, out: Path) -> Outcome:
    """Run `sparselearning report ARGUMENTS --out OUT` in this process and capture what it printed."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main([*(str(argument) for argument in arguments), "--out", str(out)])
    return Outcome(status, stdout.getvalue().splitlines(), stderr.getvalue().splitlines(), out)
