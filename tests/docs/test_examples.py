"""Every ```python block of docs/**/*.md and README.md runs, each on its own.

Each block is executed in a fresh namespace (`__name__ == "__main__"`), in an empty temporary working
directory, with `torch.manual_seed(0)`, and with the `sparselearning` modules imported afresh, so a block
cannot lean on another block or on what the test suite imported before it (`import sparselearning` alone does
not import `sparselearning.methods`, for instance). Blocks marked `<!-- no-run -->` are skipped.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.docs.blocks import Block, python_blocks

BLOCKS = python_blocks()
SLOW_BLOCK_S = 20.0  # every block must stay quick: the whole file has to run in well under 90 s


def _ours(name: str) -> bool:
    return name == "sparselearning" or name.startswith("sparselearning.")


def run_block(block: Block, cwd: Path) -> None:
    """Execute the block's code as a script would run it, then put the interpreter back as it was."""
    saved_modules = {name: module for name, module in sys.modules.items() if _ours(name)}
    saved_argv = list(sys.argv)
    saved_threads = torch.get_num_threads()
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    for name in saved_modules:
        del sys.modules[name]
    torch.manual_seed(0)
    # One thread: the examples are tiny, and on a shared machine a second thread mostly waits (10-30x slower).
    torch.set_num_threads(1)
    try:
        code = compile(block.code, f"{block.id}", "exec")
        exec(code, {"__name__": "__main__", "__file__": str(cwd / "example.py")})
    finally:
        for name in [name for name in sys.modules if _ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
        sys.argv = saved_argv
        torch.set_num_threads(saved_threads)
        for handler in root.handlers:
            if handler not in saved_logging[0]:
                handler.close()
        root.handlers[:], root.level = saved_logging


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 10, "the extractor found (almost) no ```python block: is the fence syntax still the same?"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.no_run:
        pytest.skip("marked no-run")
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    run_block(block, tmp_path)
    elapsed = time.perf_counter() - started
    assert elapsed < SLOW_BLOCK_S, f"{block.id} took {elapsed:.1f} s: make the example smaller"
