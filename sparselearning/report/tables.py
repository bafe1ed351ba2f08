"""The comparison tables of a report: per (dataset, model), one row per experiment, columns per density.

Each density contributes three columns: test accuracy as mean ± sample standard deviation over the seeds
(with the number of runs, since a spread from two seeds means little), and the mean training and inference
FLOPs as fractions of the dense model's. A `Table` holds the numbers and gives the same cells as Markdown
text and as plain rows for the HTML page, so both formats always agree. A row is what
`sparselearning.report.grouping` named it: the method variant, plus the settings that tell it apart from
other rows of that variant.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sparselearning.report.collect import RunRecord
from sparselearning.report.escape import markdown_text

MISSING = "—"
METRICS = ("test acc. (%)", "train FLOPs", "inference FLOPs")


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); the deviation is None for a single value."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def format_accuracy(mean: float, std: float | None, n: int) -> str:
    """An accuracy cell: fractions shown as percentages, e.g. "91.20 ± 0.35 (n=3)" or "91.20 ± — (n=1)"."""
    spread = MISSING if std is None else f"{100 * std:.2f}"
    return f"{100 * mean:.2f} ± {spread} (n={n})"


def format_fraction(value: float | None) -> str:
    """A FLOPs cell: a fraction of the dense model's FLOPs with four decimals, "—" when unknown."""
    return MISSING if value is None or not math.isfinite(value) else f"{value:.4f}"


def density_label(density: float) -> str:
    """How a density is written in headers and legends ("0.05", "1"); "?" when unknown."""
    return "?" if math.isnan(density) else f"{density:g}"


def _mean_of(values: Iterable[object]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return statistics.fmean(numbers) if numbers else None


def density_order(density: float) -> tuple[bool, float]:
    """Sort key that puts unknown (NaN) densities last."""
    return (math.isnan(density), 0.0 if math.isnan(density) else density)


@dataclass(frozen=True)
class Cell:
    """The runs of one variant at one density, reduced to the numbers the table shows."""

    accuracies: tuple[float, ...]
    train_flops: float | None
    inference_flops: float | None

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def accuracy(self) -> tuple[float, float | None]:
        """(mean, sample std or None) of the test accuracy, as fractions."""
        return mean_std(self.accuracies)

    def texts(self) -> list[str]:
        """The three cell texts in `METRICS` order."""
        mean, std = self.accuracy
        return [
            format_accuracy(mean, std, self.n),
            format_fraction(self.train_flops),
            format_fraction(self.inference_flops),
        ]


@dataclass
class Table:
    """One (dataset, model) group: variants (rows) by densities (column groups)."""

    dataset: str
    model: str
    variants: list[str]
    densities: list[float]
    cells: dict[tuple[str, float], Cell] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.model}"

    def columns(self) -> list[tuple[str, str]]:
        """(density label, metric) of each data column, left to right."""
        return [(density_label(d), metric) for d in self.densities for metric in METRICS]

    def header(self) -> list[str]:
        """Flat column names, the first one naming the row."""
        return ["method", *(f"d={label}: {metric}" for label, metric in self.columns())]

    def rows(self) -> list[list[str]]:
        """One list of cell texts per variant; a variant without runs at a density gets empty cells."""
        rows = []
        for variant in self.variants:
            row = [variant]
            for density in self.densities:
                cell = self.cells.get((variant, density))
                row.extend(cell.texts() if cell else [""] * len(METRICS))
            rows.append(row)
        return rows

    def markdown(self) -> str:
        """The table as GitHub-flavoured Markdown (cells escaped: no HTML, links or extra columns)."""
        header = self.header()
        lines = [
            _markdown_row(header),
            "| " + " | ".join(["---", *["---:"] * (len(header) - 1)]) + " |",
        ]
        lines.extend(_markdown_row(row) for row in self.rows())
        return "\n".join(lines)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(markdown_text(cell) for cell in cells) + " |"


def build_tables(runs: Iterable[RunRecord]) -> list[Table]:
    """Group runs by (dataset, model), then by (row, density); sorted by group, row and density.

    An unknown density is the `math.nan` object itself (see `RunRecord.density_key`), so tuples holding it
    still match as dictionary keys.
    """
    grouped: dict[tuple[str, str], dict[tuple[str, float], list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        grouped[run.dataset_model][(run.row_name, run.density_key)].append(run)
    tables = []
    for (dataset, model), by_cell in sorted(grouped.items()):
        table = Table(
            dataset,
            model,
            variants=sorted({variant for variant, _ in by_cell}),
            densities=sorted({density for _, density in by_cell}, key=density_order),
        )
        for key, members in by_cell.items():
            table.cells[key] = Cell(
                accuracies=tuple(float(run.summary["test_accuracy"]) for run in members),
                train_flops=_mean_of(run.summary.get("train_flops") for run in members),
                inference_flops=_mean_of(run.summary.get("inference_flops") for run in members),
            )
        tables.append(table)
    return tables
