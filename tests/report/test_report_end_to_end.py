"""`sparselearning report` on a real (tiny) sweep: RigL and SET runs trained here, one of them unfinished.

The sweep is trained once per module (about two seconds): RigL with ERK at two densities (two seeds at the
lower one), RigL with uniform initial densities, RigL with momentum redistribution, and SET, some of them
nested deeper than Hydra would put them, plus a run directory that never got its summary.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import re
import statistics
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from sparselearning.report.command import main
from sparselearning.train.loop import train
from tests.train.conftest import SMALL, compose_config

# (sub-folder, method, density, seed, extra overrides) of each finished run.
SWEEP = [
    ("RigL/density_0.05/seed_0", "RigL", 0.05, 0, []),
    ("RigL/density_0.05/seed_1", "RigL", 0.05, 1, []),
    ("RigL/density_0.1/seed_0", "RigL", 0.1, 0, []),
    ("uniform/RigL/density_0.05/seed_0", "RigL", 0.05, 0, ["masking.sparse_init=random"]),
    ("redist/RigL/density_0.1/seed_0", "RigL", 0.1, 0, ["masking.redistribution_mode=momentum"]),
    ("more/nested/SET/density_0.05/seed_0", "SET", 0.05, 0, []),
    ("more/nested/SET/density_0.1/seed_0", "SET", 0.1, 0, []),
]
UNFINISHED = "RigL/density_0.1/seed_3"
VARIANTS = {"RigL", "RigL (ERK)", "RigL (ERK) (momentum redist.)", "SET"}
FIGURE_STEMS = ("accuracy_vs_density", "accuracy_vs_train_flops", "layer_density", "training_curves", "mask_dynamics")


@dataclass
class Built:
    root: Path
    out: Path
    status: int
    stdout: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("sweep")
    for folder, method, density, seed, extra in SWEEP:
        overrides = [*SMALL, f"masking={method}", f"masking.density={density}", f"seed={seed}"]
        cfg = compose_config([*overrides, "optimizer.epochs=2", "masking.interval=2", *extra])
        train(cfg, root / folder)
    # An unfinished run: the loop writes config.yaml first and summary.json last.
    unfinished = root / UNFINISHED
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text((root / SWEEP[2][0] / "config.yaml").read_text())
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main([str(root)])
    return Built(root, root / "report", status, stdout.getvalue())


def _markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every table of a Markdown report under its `## ` heading: a list of {column: cell text} rows."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading = None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:].strip()
        if heading and line.startswith("| ") and heading not in tables:
            end = next((i for i, row in enumerate(lines[index:]) if not row.startswith("|")), len(lines) - index)
            block = lines[index : index + end]
            header = [cell.strip() for cell in block[0].strip("|").split(" | ")]
            rows = [[cell.strip() for cell in row.strip().strip("|").split(" | ")] for row in block[2:]]
            tables[heading] = [dict(zip(header, row)) for row in rows]
    return tables


def _expected_accuracy(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = "—" if len(values) == 1 else f"{100 * statistics.stdev(values):.2f}"
    return f"{100 * mean:.2f} ± {spread} (n={len(values)})"


def _png_dpi(data: bytes) -> float:
    """Dots per inch from a PNG's pHYs chunk (pixels per metre)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    at = data.index(b"pHYs")
    per_metre, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert unit == 1
    return per_metre * 0.0254


def test_the_command_succeeds_and_says_where(built: Built) -> None:
    assert built.status == 0
    assert str(built.out) in built.stdout
    assert "7 run(s), 1 skipped" in built.stdout


def test_every_file_is_written(built: Built) -> None:
    names = {path.name for path in built.out.iterdir()}
    assert {"report.md", "report.html", "runs.csv"} <= names
    pngs = sorted(built.out.glob("*.png"))
    assert sorted(p.name for p in pngs) == sorted(f"Synthetic-lenet300-100_{stem}.png" for stem in FIGURE_STEMS)
    for png in pngs:
        assert png.stat().st_size > 5000
        assert _png_dpi(png.read_bytes()) == pytest.approx(120, abs=0.1)
    markdown = (built.out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(linked) == [p.name for p in pngs]


def test_runs_csv_has_one_row_per_finished_run_matching_its_summary(built: Built) -> None:
    with (built.out / "runs.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(SWEEP)
    expected_dirs = {str((built.root / folder).resolve()) for folder, *_ in SWEEP}
    assert {row["run_dir"] for row in rows} == expected_dirs
    for row in rows:
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        for key, value in summary.items():
            if isinstance(value, dict):
                assert key not in row
            elif isinstance(value, float):
                assert float(row[key]) == value, key
            elif value is None:
                assert row[key] == ""
            else:
                assert row[key] == str(value), key
        assert row["sparse_init"] in ("random", "erdos-renyi-kernel")
        assert row["redistribution_mode"] in ("none", "momentum")
    assert {row["variant"] for row in rows} == VARIANTS


def test_table_cells_equal_the_summaries_mean_and_std(built: Built) -> None:
    with (built.out / "runs.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    groups: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        groups.setdefault((row["variant"], summary["target_density"]), []).append(summary)
    assert len(groups[("RigL (ERK)", 0.05)]) == 2

    tables = _markdown_tables((built.out / "report.md").read_text())
    assert list(tables) == ["Synthetic / lenet300-100"]
    table = {row["method"]: row for row in tables["Synthetic / lenet300-100"]}
    assert set(table) == VARIANTS
    for (variant, density), summaries in groups.items():
        cells = table[variant]
        label = f"d={density:g}"
        assert cells[f"{label}: test acc. (%)"] == _expected_accuracy([s["test_accuracy"] for s in summaries])
        train_flops = statistics.fmean(s["train_flops"] for s in summaries)
        inference_flops = statistics.fmean(s["inference_flops"] for s in summaries)
        assert cells[f"{label}: train FLOPs"] == f"{train_flops:.4f}"
        assert cells[f"{label}: inference FLOPs"] == f"{inference_flops:.4f}"
    # Combinations that were never run stay empty.
    assert table["RigL"]["d=0.1: test acc. (%)"] == ""
    assert table["RigL (ERK) (momentum redist.)"]["d=0.05: test acc. (%)"] == ""


def test_html_is_self_contained_with_the_same_tables(built: Built) -> None:
    page = (built.out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == len(FIGURE_STEMS)
    for source in images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    markdown_cells = {
        cell
        for rows in _markdown_tables((built.out / "report.md").read_text()).values()
        for row in rows
        for cell in row.values()
        if cell
    }
    for cell in markdown_cells:
        assert f">{cell}</td>" in page or f"</span>{cell}</td>" in page


def test_the_unfinished_run_is_listed_as_skipped(built: Built) -> None:
    markdown = (built.out / "report.md").read_text()
    skipped = [line for line in markdown.splitlines() if line.startswith("Skipped runs")]
    assert len(skipped) == 1
    assert str((built.root / UNFINISHED).resolve()) in skipped[0]
    assert "no summary.json" in skipped[0]
    assert str((built.root / UNFINISHED).resolve()) in (built.out / "report.html").read_text()
    assert str(built.root / UNFINISHED) not in (built.out / "runs.csv").read_text()


def test_out_option_and_several_paths(built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = built.root / "RigL", built.root / "more"
    assert main([str(first), str(second), "--out", str(tmp_path / "mine")]) == 0
    assert str(tmp_path / "mine") in capsys.readouterr().out
    with (tmp_path / "mine" / "runs.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["variant"] for row in rows} == {"RigL (ERK)", "SET"}
    assert len(rows) == 5
