"""Writing a report: `report.md`, a self-contained `report.html`, `runs.csv` and the figures, in one folder.

The Markdown file links the PNGs beside it; the HTML page embeds the same PNGs as base64 data URIs and
carries its CSS inline, so it can be mailed or archived as one file and opens without network access.
`runs.csv` has one row per run so the numbers can be taken elsewhere (a spreadsheet, pandas).

Text from the runs (names, paths, reasons) is escaped for each format (`sparselearning.report.escape`), and
every file is written atomically inside the output folder, never through a symbolic link
(`sparselearning.runs.files.write_atomic`); figures are rendered in memory first.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from sparselearning.errors import SparseLearningError
from sparselearning.report.collect import Collection, RunRecord, SkippedRun
from sparselearning.report.escape import csv_cell, html_text, markdown_code, markdown_text
from sparselearning.report.figures import method_colours, plot_group
from sparselearning.report.tables import METRICS, Table, build_tables, density_label
from sparselearning.runs.files import write_atomic, write_text

# Summary fields in the order runs.csv lists them; scalar fields a newer summary adds follow, sorted.
SUMMARY_COLUMNS = (
    "method",
    "dataset",
    "model",
    "seed",
    "epochs",
    "steps",
    "target_density",
    "density",
    "active_weights",
    "masked_weights",
    "test_accuracy",
    "test_top5",
    "test_loss",
    "val_accuracy",
    "best_val_accuracy",
    "inference_flops",
    "inference_flops_per_example",
    "dense_inference_flops_per_example",
    "train_flops",
    "itop_rate",
    "wall_time_s",
)
EXTRA_COLUMNS = ("sparse_init", "redistribution_mode", "variant", "row", "group", "run_dir")
# Scalar summary fields beyond SUMMARY_COLUMNS that runs.csv lists at most (most common first).
MAX_EXTRA_COLUMNS = 64
MAX_SLUG = 80
# Figures are drawn for this many (dataset, model) groups at most; the others get their table only.
MAX_FIGURE_GROUPS = 24
LEGEND = (
    "Test accuracy: mean ± sample standard deviation (ddof=1) over seeds, in %, with the number of runs n "
    "(— where there is one run). FLOPs: mean over seeds, as a fraction of the dense model's FLOPs "
    "(training: the whole run; inference: one example with the final masks)."
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; }
th { background: #f2f2f2; }
td { text-align: right; white-space: nowrap; }
td:first-child { text-align: left; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .4em; border-radius: 2px; }
.scroll { overflow-x: auto; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: .3em; }
.note { color: #555; font-size: .9em; }
code { background: #f5f5f5; padding: 0 .2em; }
"""


@dataclass
class Figure:
    """One rendered figure: its caption, its file name in the output folder and its PNG bytes."""

    caption: str
    name: str
    png: bytes


@dataclass
class GroupReport:
    """One (dataset, model) group: its table and its figures."""

    table: Table
    figures: list[Figure]


@dataclass
class ReportFiles:
    """Where a report was written."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    figures: list[Path] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:MAX_SLUG].strip("-._") or "runs"


def _group_prefixes(tables: Sequence[Table]) -> list[str]:
    """A distinct, file-name-safe prefix per group ("Synthetic-lenet300-100")."""
    prefixes: list[str] = []
    taken: set[str] = set()
    for table in tables:
        prefix = _slug(f"{table.dataset}-{table.model}")
        candidate, number = prefix, 2
        while candidate in taken:
            candidate, number = f"{prefix}-{number}", number + 1
        prefixes.append(candidate)
        taken.add(candidate)
    return prefixes


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def csv_columns(runs: Sequence[RunRecord]) -> list[str]:
    """The runs.csv header: the known scalar summary fields, up to `MAX_EXTRA_COLUMNS` other scalar ones
    (those most runs have; ties by name), then the run's settings."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        for key, value in run.summary.items():
            if key not in SUMMARY_COLUMNS and key not in EXTRA_COLUMNS and _scalar(value):
                counts[key] += 1
    extra = sorted(counts, key=lambda key: (-counts[key], key))[:MAX_EXTRA_COLUMNS]
    return [*SUMMARY_COLUMNS, *sorted(extra), *EXTRA_COLUMNS]


def runs_csv(runs: Sequence[RunRecord]) -> str:
    """One row per run; numbers written at full precision (Python's repr), missing values empty, text
    cleaned and kept from being read as a spreadsheet formula (`escape.csv_cell`)."""
    columns = csv_columns(runs)
    stream = io.StringIO(newline="")
    writer = csv.writer(stream)
    writer.writerow(columns)
    for run in runs:
        settings = {
            "sparse_init": run.sparse_init,
            "redistribution_mode": run.redistribution_mode,
            "variant": run.variant,
            "row": run.row_name,
            "group": run.group,
            "run_dir": shown_path(run.run_dir),
        }
        row = []
        for column in columns:
            value = settings[column] if column in settings else run.summary.get(column)
            row.append("" if value is None or not _scalar(value) else csv_cell(value))
        writer.writerow(row)
    return stream.getvalue()


def write_runs_csv(runs: Sequence[RunRecord], path: Path, root: Path | None = None) -> Path:
    """Write `runs_csv(runs)` atomically to `path` (never through a link below `root`)."""
    write_text(Path(path), runs_csv(runs), root)
    return Path(path)


def _write_bytes(data: bytes, stream: IO[bytes]) -> None:
    stream.write(data)


def shown_path(path: Path) -> str:
    """A run's path as the report shows it: relative to the current directory when it lies below it, so a
    report made at the root of a repository holds no path of the machine that made it and reads the same
    on every clone; absolute otherwise."""
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(Path.cwd().absolute()).as_posix()
    except ValueError:
        return str(absolute)


def _skipped_line(skipped: Sequence[SkippedRun]) -> str:
    if not skipped:
        return "Skipped runs: none."
    items = "; ".join(f"{markdown_code(shown_path(item.run_dir))} ({markdown_text(item.reason)})" for item in skipped)
    return f"Skipped runs ({len(skipped)}): {items}."


def _figures_note(groups: Sequence[GroupReport]) -> str:
    """A line saying which groups have no figures, or "" when every group has them."""
    without = len(groups) - min(len(groups), MAX_FIGURE_GROUPS)
    if without <= 0:
        return ""
    return f"Figures are drawn for the first {MAX_FIGURE_GROUPS} dataset/model groups; {without} more have tables only."


def render_markdown(collection: Collection, groups: Sequence[GroupReport]) -> str:
    """The Markdown report: summary lines, then per group its table and links to its figures."""
    sources = ", ".join(markdown_code(shown_path(path)) for path in collection.paths)
    lines = [
        "# Sparse training report",
        "",
        f"{len(collection.runs)} finished run(s) from {sources}; one row per run in [runs.csv](runs.csv).",
        "",
        _skipped_line(collection.skipped),
        "",
        LEGEND,
    ]
    if _figures_note(groups):
        lines += ["", _figures_note(groups)]
    for group in groups:
        lines += ["", f"## {markdown_text(group.table.title)}", "", group.table.markdown()]
        for figure in group.figures:
            caption = markdown_text(figure.caption)
            lines += ["", f"### {caption}", "", f"![{caption}]({figure.name})"]
    return "\n".join(lines) + "\n"


def _html_table(table: Table, colours: dict[str, str]) -> str:
    """The table with a two-row header: densities spanning their metric columns, then the metric names."""
    e = html_text
    top = ['<th rowspan="2">method</th>']
    top += [f'<th colspan="{len(METRICS)}">density {e(density_label(d))}</th>' for d in table.densities]
    second = [f"<th>{e(metric)}</th>" for _ in table.densities for metric in METRICS]
    body = []
    for row in table.rows():
        variant, values = row[0], row[1:]
        swatch = f'<span class="swatch" style="background:{e(colours.get(variant, "#888"))}"></span>'
        cells = "".join(f"<td>{e(value)}</td>" for value in values)
        body.append(f"<tr><td>{swatch}{e(variant)}</td>{cells}</tr>")
    return (
        '<div class="scroll"><table>\n'
        f"<thead><tr>{''.join(top)}</tr>\n<tr>{''.join(second)}</tr></thead>\n"
        "<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(collection: Collection, groups: Sequence[GroupReport], colours: dict[str, str]) -> str:
    """The self-contained HTML page: the Markdown report's content, images embedded, no external resources."""
    e = html_text
    sources = ", ".join(f"<code>{e(shown_path(path))}</code>" for path in collection.paths)
    if collection.skipped:
        items = "".join(f"<li><code>{e(shown_path(s.run_dir))}</code>: {e(s.reason)}</li>" for s in collection.skipped)
        skipped = f"<p>Skipped runs ({len(collection.skipped)}):</p><ul>{items}</ul>"
    else:
        skipped = "<p>Skipped runs: none.</p>"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Sparse training report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Sparse training report</h1>",
        f"<p>{len(collection.runs)} finished run(s) from {sources}; one row per run in <code>runs.csv</code>.</p>",
        skipped,
        f'<p class="note">{e(LEGEND)}</p>',
    ]
    if _figures_note(groups):
        parts.append(f'<p class="note">{e(_figures_note(groups))}</p>')
    for group in groups:
        parts += [f"<h2>{e(group.table.title)}</h2>", _html_table(group.table, colours)]
        for figure in group.figures:
            parts.append(
                f'<figure><figcaption>{e(figure.caption)}</figcaption><img src="{_data_uri(figure.png)}" '
                f'alt="{e(figure.caption)}"></figure>'
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _prepare_out_dir(out_dir: Path) -> None:
    """Create the output folder; refuse a file or a symbolic link where it should be."""
    if out_dir.is_symlink():
        raise SparseLearningError(
            f"--out {out_dir} is a symbolic link; give a real folder (reports never write through links)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise SparseLearningError(f"--out {out_dir} is a file; give a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SparseLearningError(f"cannot create {out_dir}: {error.strerror or error}") from None


def write_report(collection: Collection, out_dir: Path) -> ReportFiles:
    """Tables, figures, report.md, report.html and runs.csv of `collection`, all under `out_dir`."""
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    tables = build_tables(collection.runs)
    colours = method_colours(run.row_name for run in collection.runs)
    by_group: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for run in collection.runs:
        by_group[run.dataset_model].append(run)
    groups = []
    for index, (table, prefix) in enumerate(zip(tables, _group_prefixes(tables))):
        if index >= MAX_FIGURE_GROUPS:
            groups.append(GroupReport(table, []))
            continue
        rendered = plot_group(table, by_group[(table.dataset, table.model)], colours)
        groups.append(
            GroupReport(table, [Figure(caption, f"{prefix}_{stem}.png", png) for stem, caption, png in rendered])
        )
    files = ReportFiles(out_dir, out_dir / "report.md", out_dir / "report.html", out_dir / "runs.csv")
    try:
        for group in groups:
            for figure in group.figures:
                write_atomic(out_dir / figure.name, partial(_write_bytes, figure.png), out_dir)
                files.figures.append(out_dir / figure.name)
        write_text(files.markdown, render_markdown(collection, groups), out_dir)
        write_text(files.html, render_html(collection, groups, colours), out_dir)
        write_runs_csv(collection.runs, files.csv, out_dir)
    except OSError as error:
        raise SparseLearningError(f"cannot write the report to {out_dir}: {error.strerror or error}") from None
    return files
