"""Writing a report: `report.md`, a self-contained `report.html`, `runs.csv` and the figures, in one folder.

The Markdown file links the PNGs beside it; the HTML page embeds the same PNGs as base64 data URIs and
carries its CSS inline, so it can be mailed or archived as one file and opens without network access.
`runs.csv` has one row per run so the numbers can be taken elsewhere (a spreadsheet, pandas).
"""

from __future__ import annotations

import base64
import csv
import html
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparselearning.errors import SparseLearningError
from sparselearning.report.collect import Collection, RunRecord, SkippedRun
from sparselearning.report.tables import METRICS, Table, build_tables, density_label

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
EXTRA_COLUMNS = ("sparse_init", "redistribution_mode", "variant", "run_dir")
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
class GroupReport:
    """One (dataset, model) group: its table and its figures as (caption, path) pairs."""

    table: Table
    figures: list[tuple[str, Path]]


@dataclass
class ReportFiles:
    """Where a report was written."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    figures: list[Path] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "runs"


def _group_prefixes(tables: Sequence[Table]) -> list[str]:
    """A distinct, file-name-safe prefix per group ("Synthetic-lenet300-100")."""
    prefixes: list[str] = []
    for table in tables:
        prefix = _slug(f"{table.dataset}-{table.model}")
        candidate, number = prefix, 2
        while candidate in prefixes:
            candidate, number = f"{prefix}-{number}", number + 1
        prefixes.append(candidate)
    return prefixes


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def csv_columns(runs: Sequence[RunRecord]) -> list[str]:
    """The runs.csv header: the known scalar summary fields, any other scalar ones, then the run's settings."""
    extra = sorted(
        {
            key
            for run in runs
            for key, value in run.summary.items()
            if key not in SUMMARY_COLUMNS and key not in EXTRA_COLUMNS and _scalar(value)
        }
    )
    return [*SUMMARY_COLUMNS, *extra, *EXTRA_COLUMNS]


def write_runs_csv(runs: Sequence[RunRecord], path: Path) -> Path:
    """One row per run; numbers written at full precision (Python's repr), missing values empty."""
    columns = csv_columns(runs)
    with Path(path).open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for run in runs:
            settings = {
                "sparse_init": run.sparse_init,
                "redistribution_mode": run.redistribution_mode,
                "variant": run.variant,
                "run_dir": str(run.run_dir),
            }
            row = []
            for column in columns:
                value = settings[column] if column in settings else run.summary.get(column)
                row.append("" if value is None or not _scalar(value) else value)
            writer.writerow(row)
    return Path(path)


def _skipped_line(skipped: Sequence[SkippedRun]) -> str:
    if not skipped:
        return "Skipped runs: none."
    items = "; ".join(f"`{item.run_dir}` ({item.reason})" for item in skipped)
    return f"Skipped runs ({len(skipped)}): {items}."


def render_markdown(collection: Collection, groups: Sequence[GroupReport]) -> str:
    """The Markdown report: summary lines, then per group its table and links to its figures."""
    sources = ", ".join(f"`{path}`" for path in collection.paths)
    lines = [
        "# Sparse training report",
        "",
        f"{len(collection.runs)} finished run(s) from {sources}; one row per run in [runs.csv](runs.csv).",
        "",
        _skipped_line(collection.skipped),
        "",
        LEGEND,
    ]
    for group in groups:
        lines += ["", f"## {group.table.title}", "", group.table.markdown()]
        for caption, path in group.figures:
            lines += ["", f"### {caption}", "", f"![{caption}]({path.name})"]
    return "\n".join(lines) + "\n"


def _html_table(table: Table, colours: dict[str, str]) -> str:
    """The table with a two-row header: densities spanning their metric columns, then the metric names."""
    e = html.escape
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


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(collection: Collection, groups: Sequence[GroupReport], colours: dict[str, str]) -> str:
    """The self-contained HTML page: the Markdown report's content, images embedded, no external resources."""
    e = html.escape
    sources = ", ".join(f"<code>{e(str(path))}</code>" for path in collection.paths)
    if collection.skipped:
        items = "".join(f"<li><code>{e(str(s.run_dir))}</code>: {e(s.reason)}</li>" for s in collection.skipped)
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
    for group in groups:
        parts += [f"<h2>{e(group.table.title)}</h2>", _html_table(group.table, colours)]
        for caption, path in group.figures:
            parts.append(
                f'<figure><figcaption>{e(caption)}</figcaption><img src="{_data_uri(path)}" alt="{e(caption)}">'
                "</figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(collection: Collection, out_dir: Path) -> ReportFiles:
    """Tables, figures, report.md, report.html and runs.csv of `collection`, all under `out_dir`."""
    from sparselearning.viz.report_plots import method_colours, plot_group

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SparseLearningError(f"--out {out_dir} is a file; give a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SparseLearningError(f"cannot create {out_dir}: {error.strerror or error}") from None

    tables = build_tables(collection.runs)
    colours = method_colours(run.variant for run in collection.runs)
    by_group: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for run in collection.runs:
        by_group[run.group].append(run)
    try:
        groups = [
            GroupReport(table, plot_group(table, by_group[(table.dataset, table.model)], colours, out_dir, prefix))
            for table, prefix in zip(tables, _group_prefixes(tables))
        ]
        files = ReportFiles(out_dir, out_dir / "report.md", out_dir / "report.html", out_dir / "runs.csv")
        files.markdown.write_text(render_markdown(collection, groups), encoding="utf-8")
        files.html.write_text(render_html(collection, groups, colours), encoding="utf-8")
        write_runs_csv(collection.runs, files.csv)
    except OSError as error:
        raise SparseLearningError(f"cannot write the report to {out_dir}: {error.strerror or error}") from None
    files.figures = [path for group in groups for _, path in group.figures]
    return files
