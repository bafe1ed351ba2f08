"""The comparison figures of `sparselearning report`, one set per (dataset, model) group of runs.

Five figures: test accuracy against density, test accuracy against training FLOPs, the final per-layer
densities of each method, validation accuracy over training, and how the masks changed over training
(turnover and in-time over-parameterisation rate). Every method variant keeps one colour in all of them:
`method_colours` maps the sorted variant names of the whole report to a palette once, and every plotting
function takes that mapping instead of picking colours itself.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas (no pyplot state), so nothing needs closing
and importing this module does not switch the backend of an interactive session (a notebook, say). They are
rendered to PNG bytes; the caller writes them.

Names in figures come from run files, so figures are drawn with mathtext and LaTeX off (`$\\frac{a$` in a
method name is shown as typed, never parsed), names are cleaned and shortened (`escape.figure_text`), and a
figure draws at most `MAX_DRAWN_ROWS` rows and `MAX_PANELS` densities, so its cost does not grow with the
number of runs; the tables list everything.
"""

from __future__ import annotations

import io
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import matplotlib
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from sparselearning.report.collect import RunRecord
from sparselearning.report.escape import figure_text
from sparselearning.report.tables import Cell, Table, density_label, density_order

DPI = 120
# Above this many bars per panel, per-layer densities are drawn as lines instead (bars get too thin to read).
_MAX_BARS = 72
# Above this many layers, the layer axis is labelled by index instead of by name.
_MAX_LAYER_NAMES = 60
# The most rows (lines, legend entries) and densities (panels) one figure draws.
MAX_DRAWN_ROWS = 40
MAX_PANELS = 16
# Legend layout at the default 10-point font: a row's height, a character's width, a handle and its gaps.
_LEGEND_ROW_INCHES = 0.25
_LEGEND_CHAR_INCHES = 0.085
_LEGEND_HANDLE_INCHES = 0.7
# Text from run files is shown as typed: no mathtext, no LaTeX.
_PLAIN_TEXT: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}  # rc keys are Literal-typed

# (file stem, caption) of each figure of a group, in report order.
FIGURES = (
    ("accuracy_vs_density", "Test accuracy vs density"),
    ("accuracy_vs_train_flops", "Test accuracy vs training FLOPs"),
    ("layer_density", "Final per-layer density"),
    ("training_curves", "Validation accuracy during training"),
    ("mask_dynamics", "Mask turnover and ITOP rate during training"),
)


def method_colours(variants: Iterable[str]) -> dict[str, str]:
    """One colour (hex) per method variant, fixed by the sorted names: tab10 up to 10, tab20 up to 20 and
    evenly spaced turbo colours beyond. Compute it once per report so a method looks the same everywhere."""
    names = sorted(set(variants))
    if len(names) <= 10:
        palette = [colormaps["tab10"](i) for i in range(len(names))]
    elif len(names) <= 20:
        palette = [colormaps["tab20"](i) for i in range(len(names))]
    else:
        palette = [colormaps["turbo"](i / (len(names) - 1)) for i in range(len(names))]
    return {name: to_hex(colour) for name, colour in zip(names, palette)}


# ---------------------------------------------------------------------------------------------- helpers


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _by_cell(runs: Iterable[RunRecord]) -> dict[tuple[str, float], list[RunRecord]]:
    cells: dict[tuple[str, float], list[RunRecord]] = defaultdict(list)
    for run in runs:
        cells[(run.row_name, run.density_key)].append(run)
    return cells


def _densities(runs: Iterable[RunRecord]) -> list[float]:
    return sorted({run.density_key for run in runs}, key=density_order)


def _variants_at(cells: dict[tuple[str, float], list[RunRecord]], density: float) -> list[str]:
    """The variants with runs at `density` (an unknown density is the one `math.nan` object: compare by
    identity as well as by value)."""
    return sorted({variant for variant, d in cells if d is density or d == density})


def _density_title(density: float) -> str:
    return "density unknown" if math.isnan(density) else f"target density {density_label(density)}"


def _legend(figure: Figure, colours: dict[str, str], variants: Iterable[str]) -> None:
    """One legend for the whole figure, below the axes (clear of the title), in the colour mapping's order; a
    long legend gets more columns and makes the figure taller, so the axes keep their size."""
    present = set(variants)
    handles = [
        Line2D([0], [0], color=colour, marker="o", linewidth=2, label=figure_text(name))
        for name, colour in colours.items()
        if name in present
    ]
    if not handles:
        return
    width, _ = figure.get_size_inches()
    longest = max(len(str(handle.get_label())) for handle in handles)
    fitting = max(1, int(width / (_LEGEND_HANDLE_INCHES + _LEGEND_CHAR_INCHES * longest)))
    columns = min(len(handles), 3 if len(handles) <= 12 else 4, fitting)
    extra_rows = max(0, math.ceil(len(handles) / columns) - 2)
    if extra_rows:
        figure.set_size_inches(width, figure.get_size_inches()[1] + _LEGEND_ROW_INCHES * extra_rows)
    figure.legend(handles=handles, loc="outside lower center", ncols=columns, frameon=False)


def _no_data(axis: Axes, what: str) -> None:
    axis.text(0.5, 0.5, f"no {what} in these runs", ha="center", va="center", transform=axis.transAxes, color="0.4")


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)  # render with Agg whatever the session's backend, without switching it
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _grid(count: int, columns: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """A figure of `count` panels, `columns` to a row, with the right-hand margin the legend needs."""
    count = max(1, count)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns + 0.6, height * rows + 1.2), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _g(value: float, _position: float | None = None) -> str:
    return f"{value:g}"


def _log_ticks_at(axis: Axes, values: Sequence[float]) -> None:
    """A log x axis with ticks exactly at `values` (a few densities), labelled plainly ("0.05", "0.1")."""
    ticks = sorted(set(values))
    axis.set_xscale("log")
    axis.set_xticks(ticks, [_g(v) for v in ticks])
    axis.xaxis.set_minor_formatter(NullFormatter())
    if ticks:
        axis.set_xlim(ticks[0] / 1.4, ticks[-1] * 1.4)


def _plain_log_labels(axis: Axes) -> None:
    """Log x axis labels as plain numbers; minor ticks labelled at 2 and 5 when the axis spans few decades
    (the axis is already on a log scale, its limits set)."""
    low, high = axis.get_xlim()
    few_decades = high / max(low, 1e-300) < 300

    def minor(value: float, _position: float | None = None) -> str:
        if not few_decades or value <= 0:
            return ""
        leading = round(value / 10 ** math.floor(math.log10(value)), 6)
        return _g(value) if leading in (2.0, 5.0) else ""

    axis.xaxis.set_major_formatter(FuncFormatter(_g))
    axis.xaxis.set_minor_formatter(FuncFormatter(minor))


def _curve(runs: Sequence[RunRecord], split: str, key: str, scale: float = 1.0):
    """(epochs, mean, std or None per epoch) of `key` in the `split` lines of `runs`, averaged over runs
    (each run's curve holds one value per epoch, see `collect.read_curves`)."""
    per_epoch: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        run_epochs, values = run.curves.get((split, key), ((), ()))
        for epoch, value in zip(run_epochs, values):
            per_epoch[epoch].append(value * scale)
    epochs = sorted(per_epoch)
    means = [statistics.fmean(per_epoch[e]) for e in epochs]
    spreads = [statistics.stdev(per_epoch[e]) if len(per_epoch[e]) > 1 else None for e in epochs]
    return epochs, means, spreads


def _draw_curve(axis: Axes, epochs, means, spreads, colour: str, width: float) -> None:
    marker = "o" if len(epochs) <= 200 else None
    axis.plot(epochs, means, color=colour, marker=marker, markersize=3, linewidth=width)
    if any(s is not None for s in spreads):
        low = [m - (s or 0.0) for m, s in zip(means, spreads)]
        high = [m + (s or 0.0) for m, s in zip(means, spreads)]
        axis.fill_between(epochs, low, high, color=colour, alpha=0.15, linewidth=0)


# ---------------------------------------------------------------------------------------------- figures


def _line_width(index: int, count: int) -> float:
    """Wider lines for the variants drawn first, so a later line lying on an earlier one leaves it visible."""
    return 1.4 + 1.6 * (count - 1 - index) / max(1, count - 1)


def _dodge(index: int, count: int) -> float:
    """A small multiplicative x offset per variant (log axes) so equal points of variants do not hide."""
    return 10 ** (0.012 * (index - (count - 1) / 2))


def _errorbar(axis: Axes, xs, cells: Sequence[Cell], colour: str, width: float, linestyle: str = "-") -> list[float]:
    ys = [100 * cell.accuracy[0] for cell in cells]
    errors = [100 * (cell.accuracy[1] or 0.0) for cell in cells]
    axis.errorbar(xs, ys, yerr=errors, color=colour, marker="o", capsize=3, linewidth=width, linestyle=linestyle)
    return ys


def plot_accuracy_vs_density(table: Table, colours: dict[str, str], note: str = "") -> bytes:
    """(a) Test accuracy (%) against density on a log axis, one line per variant, error bars = std over seeds.

    Variants run only at density 1 (dense baselines) are also drawn as a dashed horizontal reference line.
    Points are nudged sideways a little per variant so that equal results stay visible.
    """
    figure = Figure(figsize=(8.6, 5.6), layout="constrained")
    axis = figure.subplots()
    known = [d for d in table.densities if not math.isnan(d)]
    count = len(table.variants)
    # Nudge only among the variants that share a density, so a lone point stays exactly at its density.
    sharing = {d: [v for v in table.variants if (v, d) in table.cells] for d in known}
    for index, variant in enumerate(table.variants):
        points = [(d, table.cells[(variant, d)]) for d in known if (variant, d) in table.cells]
        if not points:
            continue
        colour, width = colours[variant], _line_width(index, count)
        xs = [d * _dodge(sharing[d].index(variant), len(sharing[d])) for d, _ in points]
        ys = _errorbar(axis, xs, [cell for _, cell in points], colour, width)
        if all(d >= 1.0 for d, _ in points):
            axis.axhline(ys[-1], color=colour, linestyle="--", linewidth=1.2, alpha=0.8)
    if known:
        _log_ticks_at(axis, known)
    else:
        axis.set_xscale("log")
        _no_data(axis, "known densities")
    axis.set_xlabel("density (fraction of weights active, log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3, which="major")
    figure.suptitle(f"{figure_text(table.title)}: test accuracy vs density (mean ± std over seeds){note}")
    _legend(figure, colours, table.variants)
    return _png(figure)


def plot_accuracy_vs_train_flops(table: Table, colours: dict[str, str], note: str = "") -> bytes:
    """(b) Test accuracy (%) against mean training FLOPs as a fraction of dense training (log axis); each point
    is labelled with its density and carries the std over seeds as an error bar."""
    figure = Figure(figsize=(8.6, 5.6), layout="constrained")
    axis = figure.subplots()
    drawn: list[float] = []
    count = len(table.variants)
    for index, variant in enumerate(table.variants):
        points = []
        for density in table.densities:
            cell = table.cells.get((variant, density))
            if cell is not None and cell.train_flops is not None and cell.train_flops > 0:
                points.append((cell.train_flops, cell, density))
        points.sort(key=lambda point: point[0])
        if not points:
            continue
        colour = colours[variant]
        xs = [x for x, _, _ in points]
        drawn.extend(xs)
        ys = _errorbar(axis, xs, [cell for _, cell, _ in points], colour, _line_width(index, count))
        for x, y, (_, _, density) in zip(xs, ys, points):
            label = f"d={density_label(density)}"
            axis.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
    axis.set_xscale("log")
    if drawn:
        if max(drawn) <= min(drawn) * 1.01:  # (nearly) one x value: give the log axis a span around it
            axis.set_xlim(min(drawn) / 1.5, max(drawn) * 1.5)
        else:
            axis.margins(x=0.08)
        _plain_log_labels(axis)
    else:
        _no_data(axis, "training FLOPs")
    axis.set_xlabel("training FLOPs (fraction of dense training, log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3, which="both")
    figure.suptitle(f"{figure_text(table.title)}: test accuracy vs training cost (points labelled with density){note}")
    _legend(figure, colours, table.variants)
    return _png(figure)


def _mean_layer_densities(runs: Sequence[RunRecord]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        layers = run.summary.get("layer_density")
        if isinstance(layers, dict):
            for name, density in layers.items():
                number = _number(density)
                if number is not None:
                    values[str(name)].append(number)
    return {name: statistics.fmean(numbers) for name, numbers in values.items()}


def _layer_axis(axis: Axes, layers: Sequence[str]) -> None:
    """Layer names as tick labels, or, past `_MAX_LAYER_NAMES` layers, a few integer positions."""
    if len(layers) <= _MAX_LAYER_NAMES:
        names = [figure_text(name.removesuffix(".weight"), 40) for name in layers]
        axis.set_xticks(list(range(len(layers))), names, rotation=60, ha="right")
    else:
        axis.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))


def plot_layer_densities(runs: Sequence[RunRecord], colours: dict[str, str], title: str, note: str = "") -> bytes:
    """(c) Final density of every masked layer, per variant (mean over seeds): grouped bars, or lines when
    there are too many bars to read; one panel per target density, stacked."""
    cells = _by_cell(runs)
    densities = _densities(runs)
    seen_layers: dict[str, None] = {}  # every layer of the figure, in first-seen (model) order
    panels = []
    for density in densities:
        variants = _variants_at(cells, density)
        means = {v: _mean_layer_densities(cells[(v, density)]) for v in variants}
        means = {v: layers for v, layers in means.items() if layers}
        for layer_means in means.values():
            seen_layers.update(dict.fromkeys(layer_means))
        panels.append((density, means))
    figure_layers = list(seen_layers)
    most = max((len(means) for _, means in panels), default=1)
    width = min(22.0, max(7.0, 0.32 * len(figure_layers) * max(1.0, math.sqrt(most)) + 2.5))
    figure, axes = _grid(len(panels), 1, width, 3.4)
    for axis, (density, means) in zip(axes, panels):
        layers = [name for name in figure_layers if any(name in m for m in means.values())]
        many = len(layers) > _MAX_LAYER_NAMES
        positions = range(len(layers))
        if not means:
            _no_data(axis, "masked layers")
        elif len(layers) * len(means) <= _MAX_BARS:
            bar = 0.8 / len(means)
            for index, (variant, layer_means) in enumerate(means.items()):
                offsets = [p - 0.4 + bar * (index + 0.5) for p in positions]
                heights = [layer_means.get(name, math.nan) for name in layers]
                axis.bar(offsets, heights, width=bar, color=colours[variant])
        else:
            for variant, layer_means in means.items():
                heights = [layer_means.get(name, math.nan) for name in layers]
                marker = None if many else "o"
                axis.plot(positions, heights, color=colours[variant], marker=marker, markersize=3)
        _layer_axis(axis, layers)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("layer density\n(fraction active)")
        axis.set_title(_density_title(density), fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("masked layer (model order)")
    figure.suptitle(f"{figure_text(title)}: final per-layer density (mean over seeds){note}")
    _legend(figure, colours, {run.row_name for run in runs})
    return _png(figure)


def _per_density_curves(
    runs: Sequence[RunRecord],
    colours: dict[str, str],
    axes_for: Callable[[int], list[Axes]],
    series: Sequence[tuple[str, str, float, str]],
) -> None:
    """Draw, for each density (panel row) and each (split, key, scale, label) series (panel column), the
    mean curve of every variant."""
    cells = _by_cell(runs)
    for row, density in enumerate(_densities(runs)):
        axes = axes_for(row)
        variants = _variants_at(cells, density)
        for axis, (split, key, scale, label) in zip(axes, series):
            drawn = False
            for index, variant in enumerate(variants):
                epochs, means, spreads = _curve(cells[(variant, density)], split, key, scale)
                if epochs:
                    width = _line_width(index, len(variants))
                    _draw_curve(axis, epochs, means, spreads, colours[variant], width)
                    drawn = True
            if not drawn:
                _no_data(axis, f"{split} {key} records")
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
            axis.set_title(f"{_density_title(density)}", fontsize=10)


def plot_training_curves(runs: Sequence[RunRecord], colours: dict[str, str], title: str, note: str = "") -> bytes:
    """(d) Validation accuracy (%) after each epoch, mean over seeds per variant with a ±std band; one panel
    per target density."""
    densities = _densities(runs)
    figure, axes = _grid(len(densities), 3, 4.6, 3.6)
    _per_density_curves(runs, colours, lambda row: [axes[row]], [("val", "accuracy", 100.0, "validation accuracy (%)")])
    figure.suptitle(f"{figure_text(title)}: validation accuracy during training (mean ± std over seeds){note}")
    _legend(figure, colours, {run.row_name for run in runs})
    return _png(figure)


def plot_mask_dynamics(runs: Sequence[RunRecord], colours: dict[str, str], title: str, note: str = "") -> bytes:
    """(e) How the masks changed: per epoch, the turnover (% of active weights grown since the previous
    epoch) and the ITOP rate (% of masked weights ever active); rows per target density, mean over seeds."""
    densities = _densities(runs)
    figure = Figure(figsize=(11.2, 3.4 * len(densities) + 1.2), layout="constrained")
    grid = figure.subplots(len(densities), 2, squeeze=False)
    series = [
        ("masks", "turnover", 100.0, "turnover (% of active weights\nnew since previous epoch)"),
        ("masks", "itop_rate", 100.0, "ITOP rate (% of masked\nweights ever active)"),
    ]
    _per_density_curves(runs, colours, lambda row: list(grid[row]), series)
    figure.suptitle(
        f"{figure_text(title)}: mask turnover and in-time over-parameterisation (mean ± std over seeds){note}"
    )
    _legend(figure, colours, {run.row_name for run in runs})
    return _png(figure)


def _drawn_part(table: Table, runs: Sequence[RunRecord]) -> tuple[Table, list[RunRecord], str]:
    """The table and runs a figure draws (the first `MAX_DRAWN_ROWS` rows, the first `MAX_PANELS` densities)
    and a note for the title when that is not all of them."""
    rows, densities = table.variants[:MAX_DRAWN_ROWS], table.densities[:MAX_PANELS]
    if len(rows) == len(table.variants) and len(densities) == len(table.densities):
        return table, list(runs), ""
    kept_rows = set(rows)
    kept_densities = {d for d in densities if not math.isnan(d)}
    keep_unknown = any(math.isnan(d) for d in densities)

    def drawn(row: str, density: float) -> bool:
        return row in kept_rows and (density in kept_densities or (keep_unknown and math.isnan(density)))

    part = replace(
        table,
        variants=rows,
        densities=densities,
        cells={key: cell for key, cell in table.cells.items() if drawn(*key)},
    )
    chosen = [run for run in runs if drawn(run.row_name, run.density_key)]
    note = f"\n(drawn: {len(rows)} of {len(table.variants)} rows, {len(densities)} of {len(table.densities)} densities)"
    return part, chosen, note


def plot_group(table: Table, runs: Sequence[RunRecord], colours: dict[str, str]) -> list[tuple[str, str, bytes]]:
    """All five figures of one (dataset, model) group as (file stem, caption, PNG bytes), in `FIGURES` order;
    drawn with mathtext and LaTeX off, so names from run files are never parsed as formulas."""
    with matplotlib.rc_context(_PLAIN_TEXT):
        part, chosen, note = _drawn_part(table, runs)
        rendered = {
            "accuracy_vs_density": plot_accuracy_vs_density(part, colours, note),
            "accuracy_vs_train_flops": plot_accuracy_vs_train_flops(part, colours, note),
            "layer_density": plot_layer_densities(chosen, colours, table.title, note),
            "training_curves": plot_training_curves(chosen, colours, table.title, note),
            "mask_dynamics": plot_mask_dynamics(chosen, colours, table.title, note),
        }
    return [(stem, caption, rendered[stem]) for stem, caption in FIGURES]
