"""MkDocs hook: pages other people are still writing may be absent without breaking `mkdocs build --strict`.

`OPTIONAL` lists them. While one is missing from `docs/`, its nav entry is dropped and every Markdown link to
it (`[Results](results.md)`, `[Results](../results.md#mnist)`) is rendered as plain text naming the file
(`Results (docs/results.md)`). Once the file exists, the nav entry and the links work as written: nothing
here needs to change.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

OPTIONAL = ("performance.md", "reliability.md", "cifar_recipes.md", "results.md")

_LINK = re.compile(
    r"\[(?P<text>[^\]]+)\]\((?P<up>(?:\.\./)*)(?P<page>" + "|".join(re.escape(p) for p in OPTIONAL) + r")(?:#[^)]*)?\)"
)


def missing_pages(docs_dir: str | Path) -> set[str]:
    """The optional pages not (yet) present in `docs_dir`."""
    return {page for page in OPTIONAL if not (Path(docs_dir) / page).is_file()}


def _prune_nav(nav: list[Any], missing: set[str]) -> list[Any]:
    kept: list[Any] = []
    for entry in nav:
        if isinstance(entry, str):
            if entry not in missing:
                kept.append(entry)
            continue
        (title, target), *_ = entry.items()
        if isinstance(target, list):
            children = _prune_nav(target, missing)
            if children:
                kept.append({title: children})
        elif target not in missing:
            kept.append(entry)
    return kept


def unlink_missing(markdown: str, missing: set[str]) -> str:
    """Markdown links to missing optional pages become plain text naming the file."""

    def replace(match: re.Match[str]) -> str:
        page = match.group("page")
        return f"{match.group('text')} (docs/{page})" if page in missing else match.group(0)

    return _LINK.sub(replace, markdown)


def on_config(config: Any, **kwargs: Any) -> Any:
    if config.get("nav"):
        config["nav"] = _prune_nav(config["nav"], missing_pages(config["docs_dir"]))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    return unlink_missing(markdown, missing_pages(config["docs_dir"]))
