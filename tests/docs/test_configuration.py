"""docs/configuration.md lists every key of every YAML file under sparselearning/conf, with its default."""

from __future__ import annotations

import re

from tests.docs import config_reference as reference

REGENERATE = "regenerate it: .venv/bin/python -m tests.docs.config_reference --write"


def _sections(text: str) -> dict[str, str]:
    """Generated section of each group ("" for the top level), by its ### heading."""
    sections: dict[str, str] = {}
    for match in re.finditer(r"^### (.+)$", text, flags=re.MULTILINE):
        heading = match.group(1)
        group = next((g for g in (*reference.GROUPS, "specific") if heading.startswith(f"`{g}`")), "")
        end = text.find("\n### ", match.end())
        sections[group] = text[match.end() : end if end >= 0 else len(text)]
    return sections


def test_the_generated_tables_are_up_to_date() -> None:
    block = reference.page_block(reference.PAGE.read_text(encoding="utf-8"))
    assert block is not None, f"{reference.PAGE} lost its generated block markers"
    assert block == reference.generate(), f"docs/configuration.md is out of date with sparselearning/conf: {REGENERATE}"


def test_every_key_of_every_yaml_file_has_a_row() -> None:
    sections = _sections(reference.page_block(reference.PAGE.read_text(encoding="utf-8")) or "")
    missing = [
        f"{group}.{key}" if group else key
        for group, key in sorted(reference.all_keys())
        if f"| `{key}` |" not in sections.get(group, "")
    ]
    assert not missing, f"keys of sparselearning/conf missing from docs/configuration.md: {missing}; {REGENERATE}"


def test_every_option_of_every_group_is_listed() -> None:
    sections = _sections(reference.page_block(reference.PAGE.read_text(encoding="utf-8")) or "")
    missing = [
        f"{group}={option}"
        for group in (*reference.GROUPS, "specific")
        for option in reference.options(group)
        if f"`{option}`" not in sections.get(group, "")
    ]
    assert not missing, f"config options missing from docs/configuration.md: {missing}; {REGENERATE}"


def test_the_tables_show_what_hydra_composes() -> None:
    """Each cell, read as YAML, is the value Hydra composes for that option (so the page cannot mislead)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    wrong = []
    with initialize_config_module("sparselearning.conf", version_base=None):
        for group in reference.GROUPS:
            for option, values in reference.group_entries(group).items():
                composed = compose("config", overrides=[f"{group}={option}"])[group]
                for key, text in values.items():
                    if text == "???":
                        parent, _, last = key.rpartition(".")  # train._target_: a key of a node
                        ok = OmegaConf.is_missing(OmegaConf.select(composed, parent) if parent else composed, last)
                    else:
                        expected = OmegaConf.to_container(OmegaConf.create(f"value: {text}"))["value"]
                        actual = OmegaConf.to_container(composed, resolve=False)[key]
                        ok = actual == expected
                    if not ok:
                        wrong.append(f"{group}={option}: {key}")
    assert not wrong, f"table cells that differ from the composed config: {wrong}"
