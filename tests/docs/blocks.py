"""The code blocks of the documentation: every ```python block of docs/**/*.md and README.md, and every
`sparselearning ...` command line of the ```bash blocks, with where each one starts.

A Python block preceded by the HTML comment `<!-- no-run -->` (or fenced as ```python title="no-run") is
shown but not executed: keep that for code that truly cannot run here (a GPU, torchrun, a full dataset).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_NO_RUN_COMMENT = re.compile(r"<!--\s*no-run\s*-->")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    info: str  # everything after the language on the fence line
    code: str
    no_run: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    """Every Markdown page of the site, and the README."""
    pages = sorted(path for path in DOCS.rglob("*.md") if "hooks" not in path.relative_to(DOCS).parts)
    return [*pages, ROOT / "README.md"]


def _previous_nonblank(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.strip():
            return line.strip()
    return ""


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening or not opening.group("info").strip():
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        language, _, info = opening.group("info").strip().partition(" ")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            line = lines[end]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            end += 1
        no_run = bool(_NO_RUN_COMMENT.search(_previous_nonblank(lines, index))) or 'title="no-run"' in info
        blocks.append(Block(path, index + 1, language.lower(), info, "\n".join(body) + "\n", no_run))
        index = end + 1
    return blocks


def python_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in extract_blocks(path) if block.language in ("python", "py")]


def command_lines(block: Block) -> list[list[str]]:
    """The `sparselearning ...` invocations of a shell block as argument lists (from `sparselearning` on),
    `torchrun ... -m sparselearning ...` included; continuation lines are joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block.code)
    commands = []
    for line in joined.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for position, word in enumerate(words):
            program = word == "sparselearning" or word.endswith("/sparselearning")
            if program and (position == 0 or words[position - 1] == "-m"):
                commands.append(["sparselearning", *words[position + 1 :]])
                break
    return commands


def shell_commands() -> list[tuple[Block, list[str]]]:
    """Every `sparselearning` command line of every ```bash / ```sh / ```console block."""
    found = []
    for path in markdown_files():
        for block in extract_blocks(path):
            if block.language in ("bash", "sh", "shell", "console"):
                found.extend((block, command) for command in command_lines(block))
    return found
