"""The plots of one run, written to `plots/`: training curves and the final per-layer densities."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sparselearning.runs.files import write_atomic
from sparselearning.runs.metrics import read_metrics


def save_figure(figure: plt.Figure, path: Path, root: Path | None = None) -> None:
    """Render `figure` as PNG and write it atomically (never through a link below `root`), then close it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(figure)
    write_atomic(Path(path), lambda stream: stream.write(buffer.getvalue()), root)


def _series(records: list[dict[str, Any]], split: str, key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if r.get("split") == split and isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(records: list[dict[str, Any]], title: str, path: Path, root: Path | None = None) -> None:
    """Loss, accuracy, learning rate and density against the training step, in one 2x2 figure."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    panels: list[tuple[Any, str, str, list[tuple[str, str | None]]]] = [
        (axes[0, 0], "loss", "cross-entropy loss", [("train", "train"), ("val", "validation")]),
        (axes[0, 1], "accuracy", "top-1 accuracy", [("train", "train"), ("val", "validation")]),
        (axes[1, 0], "lr", "learning rate", [("train", None)]),
        (axes[1, 1], "density", "active fraction of masked weights", [("train", None)]),
    ]
    for axis, key, label, splits in panels:
        for split, legend in splits:
            steps, values = _series(records, split, key)
            if steps:
                axis.plot(steps, values, marker="o" if split == "val" else None, markersize=3, label=legend)
        axis.set_xlabel("training step")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if any(legend for _, legend in splits):
            axis.legend()
    figure.suptitle(title)
    save_figure(figure, path, root)


def plot_layer_densities(densities: dict[str, float], title: str, path: Path, root: Path | None = None) -> None:
    """One bar per masked layer, in model order, with the overall density as a line."""
    names = list(densities)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 3), 4.5), constrained_layout=True)
    axis.bar(range(len(names)), [densities[n] for n in names], color="tab:blue")
    axis.set_xticks(range(len(names)), [n.removesuffix(".weight") for n in names], rotation=60, ha="right")
    axis.set_ylabel("density (active fraction)")
    axis.set_xlabel("layer")
    axis.set_ylim(0, 1.05)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    save_figure(figure, path, root)


def plot_run(run_dir: Path, summary: dict[str, Any]) -> list[Path]:
    """Both figures of a finished run; returns their paths."""
    folder = Path(run_dir) / "plots"
    title = f"{summary['method']} on {summary['dataset']} / {summary['model']}, density {summary['density']:.4f}"
    curves, layers = folder / "training_curves.png", folder / "layer_density.png"
    plot_training_curves(read_metrics(Path(run_dir) / "metrics.jsonl"), title, curves, Path(run_dir))
    plot_layer_densities(summary["layer_density"], title, layers, Path(run_dir))
    return [curves, layers]
