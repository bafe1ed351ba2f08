"""Making text read from run directories safe to show in a report's Markdown, HTML, CSV and figures.

Method, dataset and model names, paths and skip reasons come from files anyone can write. Before they land in
an output they lose the characters that can hide or reorder what a reader sees (NUL, other control
characters, the Unicode bidirectional overrides and isolates), and are then escaped for the format:
HTML special characters everywhere, Markdown syntax that could add links, images, code or table cells,
spreadsheet formulas in CSV cells. Figures are drawn with mathtext and LaTeX off (see
`sparselearning.report.figures`), so `$...$` in a name is shown as it is and never parsed.
"""

from __future__ import annotations

import html
import re

# C0 controls (tab and newline handled apart), DEL, C1 controls, bidi marks, embeddings, overrides, isolates.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile("[\t\n]")
# Markdown characters that could start a link, an image, emphasis, a code span or a table cell.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*\[\]|~])")
# A cell starting with one of these is read as a formula by spreadsheet programs.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_FIGURE_TEXT = 80


def clean(text: object, keep_newlines: bool = False) -> str:
    """`text` as a string without hidden characters; tabs and newlines become spaces unless kept."""
    cleaned = _HIDDEN.sub("", str(text))
    return cleaned if keep_newlines else _BREAKS.sub(" ", cleaned)


def html_text(text: object) -> str:
    """Text for an HTML element or attribute value: cleaned, then `& < > " '` escaped."""
    return html.escape(clean(text), quote=True)


def markdown_text(text: object) -> str:
    """Text for Markdown (a table cell, a heading, a list): cleaned, HTML characters as entities (so raw
    HTML stays text) and link, emphasis, code and table syntax backslash-escaped."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", html.escape(clean(text), quote=False))


def markdown_code(text: object) -> str:
    """Text as a Markdown code span: its fence is longer than any run of backticks inside it, so the text
    cannot close the span; inside a span nothing else is interpreted."""
    cleaned = clean(text)
    longest = max((len(run) for run in re.findall("`+", cleaned)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {cleaned} " if cleaned.startswith("`") or cleaned.endswith("`") else cleaned
    return f"{fence}{padded}{fence}"


def csv_cell(value: object) -> object:
    """A CSV cell: numbers as they are; text cleaned and, where a spreadsheet would read it as a formula
    (it starts with = + - @, a tab or a carriage return, perhaps after spaces), prefixed with `'`."""
    if not isinstance(value, str):
        return value
    cleaned = clean(value)
    return f"'{cleaned}" if cleaned.lstrip(" ").startswith(_FORMULA_STARTS) else cleaned


def figure_text(text: object, limit: int = MAX_FIGURE_TEXT) -> str:
    """Text for a figure label (legend, title, tick): cleaned and cut to `limit` characters, so one long name
    cannot push everything else out of the figure."""
    cleaned = clean(text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
