"""`sparselearning report PATH... [--out DIR]`: tables and comparison figures of runs and sweeps.

Bad input (a missing path, a folder without runs, an unwritable output) ends with one line on stderr and
exit status 2, like every other command; `SPARSELEARNING_TRACEBACK=1` shows the traceback instead. A run that
cannot be reported (unfinished, unreadable, a value out of range) does not stop the report: it gets one
`skipped <run>: <reason>` line on stderr and is listed in the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from sparselearning.errors import SparseLearningError, print_failure
from sparselearning.report.collect import collect_runs
from sparselearning.report.escape import clean
from sparselearning.report.grouping import assign_rows
from sparselearning.report.render import write_report

DESCRIPTION = (
    "Compare finished runs: find every summary.json under the given run directories or sweep folders, then "
    "write report.md, a self-contained report.html, runs.csv and the figures. Runs are averaged over seeds "
    "only when every other setting is equal; runs without a usable summary.json are listed as skipped."
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors become `SparseLearningError` (one line, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise SparseLearningError(f"{message} (see sparselearning report --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments: one or more paths, an optional output folder and settings to pool over."""
    parser = _Parser(prog="sparselearning report", description=DESCRIPTION)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run directory or folder of runs (a sweep)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default: PATH/report for a single PATH, else ./report)",
    )
    parser.add_argument(
        "--pool",
        metavar="KEY",
        action="append",
        default=[],
        help="average over this setting (a dotted key such as optimizer.lr) instead of splitting rows by it; "
        "repeatable",
    )
    return parser


def default_out(paths: list[str]) -> Path:
    """`PATH/report` for one path (its parent's for a summary.json), `./report` for several."""
    if len(paths) == 1:
        path = Path(paths[0])
        return (path.parent if path.is_file() else path) / "report"
    return Path("report")


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status (0, or 2 after one `error: ...` line on stderr)."""
    try:
        try:
            arguments = build_parser().parse_args(argv)
        except SystemExit as stop:  # --help
            return int(stop.code or 0)
        collection = collect_runs(arguments.paths)
        assign_rows(collection.runs, arguments.pool)
        out = Path(arguments.out) if arguments.out else default_out(arguments.paths)
        files = write_report(collection, out)
    except SparseLearningError as error:
        return print_failure(error)
    for item in collection.skipped:
        print(f"skipped {clean(item.run_dir)}: {clean(item.reason)}", file=sys.stderr)
    skipped = f", {len(collection.skipped)} skipped" if collection.skipped else ""
    print(
        f"report of {len(collection.runs)} run(s){skipped} written to {clean(files.out_dir)}: "
        f"{files.markdown.name}, {files.html.name}, {files.csv.name} and {len(files.figures)} figure(s)"
    )
    return 0
