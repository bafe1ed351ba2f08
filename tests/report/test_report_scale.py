"""`sparselearning report` stays linear: many runs, many unfinished folders, a summary with very many layers.

The time bounds are generous (a loaded 2-core machine takes a fraction of them; see each test), and far below
what the code before these tests took.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

from benchmarks.report_scale import write_run as write_scale_run
from benchmarks.report_scale import write_sweep
from sparselearning.report.collect import collect_runs, find_run_dirs
from sparselearning.report.grouping import assign_rows
from sparselearning.report.validate import MAX_LAYERS
from tests.report.runs_on_disk import report


def test_2000_small_runs_are_collected_in_seconds_with_bounded_memory(tmp_path: Path) -> None:
    # Measured with 2 cores under a load of 8: 1.6 s and a 27 MiB peak (the code before: 24-29 s).
    write_sweep(tmp_path / "sweep", 2000)
    tracemalloc.start()
    start = time.perf_counter()
    collection = collect_runs([tmp_path / "sweep"])
    assign_rows(collection.runs)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(collection.runs) == 2000 and collection.skipped == []
    assert len({run.row for run in collection.runs}) == 5
    assert len({(run.row, run.density_key) for run in collection.runs}) == 20
    assert seconds < 8, seconds
    assert peak < 100 * 2**20, peak


def test_finding_3000_unfinished_runs_is_linear(tmp_path: Path) -> None:
    # 0.3 s here; the code before compared every candidate with every other one (2000 took 19 s, 5000 388 s).
    for index in range(3000):
        folder = tmp_path / "sweep" / f"method_{index % 10}" / f"run_{index}"
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("")
    start = time.perf_counter()
    finished, unfinished = find_run_dirs(tmp_path / "sweep")
    seconds = time.perf_counter() - start
    assert finished == [] and len(unfinished) == 3000
    assert seconds < 10, seconds


def test_a_summary_with_20000_layers_is_refused_quickly(tmp_path: Path) -> None:
    write_scale_run(tmp_path / "sweep" / "normal", "SET", 0.1, 0)
    wide = tmp_path / "sweep" / "wide"
    write_scale_run(wide, "SET", 0.05, 0, layers=20_000)
    start = time.perf_counter()
    outcome = report(tmp_path / "sweep", out=tmp_path / "out")
    seconds = time.perf_counter() - start
    assert outcome.status == 0
    assert outcome.err == [
        f"skipped {wide}: summary.json: layer_density has 20000 entries; at most {MAX_LAYERS} layers are allowed"
    ]
    assert seconds < 60, seconds


def test_a_summary_at_the_layer_limit_is_drawn_quickly(tmp_path: Path) -> None:
    # About 4 s of figures under load; the code before built the layer list with a quadratic scan and drew a
    # tick label per layer (20,000 layers did not finish in 300 s).
    write_scale_run(tmp_path / "sweep" / "normal", "SET", 0.1, 0)
    write_scale_run(tmp_path / "sweep" / "wide", "SET", 0.05, 0, layers=MAX_LAYERS)
    start = time.perf_counter()
    outcome = report(tmp_path / "sweep", out=tmp_path / "out")
    seconds = time.perf_counter() - start
    assert outcome.status == 0 and outcome.err == []
    assert len(outcome.csv_rows()) == 2
    assert seconds < 60, seconds


def test_a_figure_draws_at_most_its_row_limit_and_the_table_lists_every_row(tmp_path: Path) -> None:
    from sparselearning.report.figures import MAX_DRAWN_ROWS

    count = MAX_DRAWN_ROWS + 5
    for index in range(count):
        write_scale_run(tmp_path / "sweep" / f"m{index:02d}", f"M{index:02d}", 0.1, 0)
    outcome = report(tmp_path / "sweep", out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    assert len(outcome.table_rows()) == count
    assert len(list(outcome.folder.glob("*.png"))) == 5


def test_groups_past_the_figure_limit_get_their_table_and_a_note(tmp_path: Path, monkeypatch) -> None:
    from sparselearning.report import render

    monkeypatch.setattr(render, "MAX_FIGURE_GROUPS", 1)
    for dataset in ("MNIST", "FashionMNIST"):
        folder = tmp_path / "sweep" / dataset
        write_scale_run(folder, "SET", 0.1, 0)
        content = (folder / "summary.json").read_text().replace('"MNIST"', f'"{dataset}"')
        (folder / "summary.json").write_text(content)
    outcome = report(tmp_path / "sweep", out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    markdown = outcome.text("report.md")
    assert markdown.count("\n## ") == 2
    assert "Figures are drawn for the first 1 dataset/model groups; 1 more have tables only." in markdown
    assert sorted(path.name.split("_")[0] for path in outcome.folder.glob("*.png")) == ["FashionMNIST-lenet300-100"] * 5
