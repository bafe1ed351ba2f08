"""`mkdocs build --strict` succeeds with no warning, and the API reference holds what it should."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.blocks import DOCS, ROOT

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")


def _load_hook():
    spec = importlib.util.spec_from_file_location("optional_pages", DOCS / "hooks" / "optional_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


optional_pages = _load_hook()

# Objects each API page must document (the seed document's structure, plus the rest of the public API).
API_PAGES = {
    "api/funcs": [
        "sparselearning.funcs.decay.CosineDecay",
        "sparselearning.funcs.decay.LinearDecay",
        "sparselearning.funcs.decay.MagnitudePruneDecay",
        "sparselearning.funcs.grow.abs_grad_growth",
        "sparselearning.funcs.grow.momentum_growth",
        "sparselearning.funcs.grow.random_growth",
        "sparselearning.funcs.grow.no_growth",
        "sparselearning.funcs.grow.struct_abs_grad_growth",
        "sparselearning.funcs.init_scheme.erdos_renyi_init",
        "sparselearning.funcs.init_scheme.get_erdos_renyi_dist",
        "sparselearning.funcs.init_scheme.lottery_ticket_init",
        "sparselearning.funcs.init_scheme.random_init",
        "sparselearning.funcs.init_scheme.resume_init",
        "sparselearning.funcs.init_scheme.struct_erdos_renyi_init",
        "sparselearning.funcs.init_scheme.struct_random_init",
        "sparselearning.funcs.prune.global_magnitude_prune",
        "sparselearning.funcs.prune.magnitude_prune",
        "sparselearning.funcs.prune.struct_magnitude_prune",
        "sparselearning.funcs.redistribute.grad_redistribution",
        "sparselearning.funcs.redistribute.momentum_redistribution",
        "sparselearning.funcs.redistribute.nonzero_redistribution",
    ],
    "api/core": [
        "sparselearning.core.Masking",
        "sparselearning.core.Masking.step",
        "sparselearning.core.Masking.add_module",
    ],
    "api/methods": ["sparselearning.methods.rigl", "sparselearning.methods.set_", "sparselearning.methods.lottery"],
    "api/counting": ["sparselearning.counting.training.training_flops_fraction"],
    "api/sync": ["sparselearning.sync.verify_masks"],
    "api/report": ["sparselearning.report.collect.collect_runs"],
    "api/export": ["sparselearning.export.convert.to_sparse"],
}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output[-4000:]}"
    return site, output


def test_the_site_builds_strictly_without_warnings(built_site: tuple[Path, str]) -> None:
    site, output = built_site
    assert "WARNING" not in output, output
    assert (site / "index.html").is_file()
    assert (site / "img" / "training_curves.png").is_file() and (site / "img" / "layer_density.png").is_file()
    assert not (site / "hooks").exists(), "the build's own hook must not be published"


@pytest.mark.parametrize("page", sorted(API_PAGES))
def test_api_reference_documents_the_public_api(built_site: tuple[Path, str], page: str) -> None:
    site, _ = built_site
    html = (site / page / "index.html").read_text(encoding="utf-8")
    missing = [name for name in API_PAGES[page] if f'id="{name}"' not in html]
    assert not missing, f"{page} does not document {missing}"


def test_links_to_pages_not_written_yet_become_plain_text() -> None:
    text = "See [Results](../results.md#mnist) and [the methods](index.md)."
    assert (
        optional_pages.unlink_missing(text, {"results.md"})
        == "See Results (docs/results.md) and [the methods](index.md)."
    )
    assert optional_pages.unlink_missing(text, set()) == text


def test_nav_entries_of_missing_optional_pages_are_dropped() -> None:
    nav = [{"Home": "index.md"}, {"Results": "results.md"}, {"API": [{"core": "api/core.md"}]}, "performance.md"]
    pruned = optional_pages._prune_nav(nav, {"results.md", "performance.md"})
    assert pruned == [{"Home": "index.md"}, {"API": [{"core": "api/core.md"}]}]
