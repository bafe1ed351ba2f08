"""The results page: baselines borrowed from another grid, validation accuracy beside test accuracy."""

from __future__ import annotations

import pytest

from experiments import results_page


def _row(variant: str, density: float, seed: int, test: float, val: str) -> dict[str, str]:
    run_dir = f"/x/results/g/runs/{variant}/density_{density}/seed_{seed}"
    return {"run_dir": run_dir, "test_accuracy": str(test), "val_accuracy": val, "train_flops": "0.05",
            "inference_flops": "0.05"}  # fmt: skip


def test_baselines_are_the_named_variants_at_one_density_relabelled() -> None:
    rows = [
        _row("SNFS", 0.05, 0, 0.98, "0.99"),
        _row("SNFS", 0.05, 1, 0.99, "0.99"),
        _row("SNFS", 0.02, 0, 0.97, "0.98"),
        _row("SET", 0.05, 0, 0.96, "0.97"),
    ]
    baselines = results_page._baselines(results_page._summaries(rows), "main", 0.05, ("SNFS",))
    assert list(baselines) == [("SNFS (baseline: main)", 0.05)]
    assert [row["test_accuracy"] for row in baselines[("SNFS (baseline: main)", 0.05)]] == ["0.98", "0.99"]
    assert results_page._baselines({}, "absent", 0.05, ("SNFS",)) == {}


def test_table_shows_validation_accuracy_and_a_dash_where_there_is_none() -> None:
    grouped = {
        ("RigL", 0.05): [_row("RigL", 0.05, 0, 0.98, "0.99"), _row("RigL", 0.05, 1, 0.99, "0.98")],
        ("SET", 0.05): [_row("SET", 0.05, 0, 0.97, "")],
    }
    lines = results_page._table(grouped)
    assert "validation accuracy %" in lines[0]
    rigl = next(line for line in lines if line.startswith("| RigL |"))
    set_ = next(line for line in lines if line.startswith("| SET |"))
    assert "| 98.50 ± 0.71 (n=2) |" in rigl and "| 98.50 | 0.0500 |" in rigl
    assert "| — | 0.0500 |" in set_


@pytest.mark.parametrize("grid", sorted(results_page.GRIDS))
def test_every_grid_on_the_page_has_a_grid_file(grid: str) -> None:
    assert grid in results_page.GRIDS
    assert (results_page.REPO / "experiments" / "grids" / f"{grid}.yaml").exists()


def test_published_figures_only_where_asked() -> None:
    grouped = {("SNFS", 0.05): [_row("SNFS", 0.05, 0, 0.90, "0.91")]}
    compared = next(line for line in results_page._table(grouped) if line.startswith("| SNFS |"))
    plain = next(line for line in results_page._table(grouped, compare=False) if line.startswith("| SNFS |"))
    assert "| 98.53 | -8.53 **flagged** |" in compared
    assert "| — | — |" in plain


def test_pooled_rows_join_the_same_variant_and_density_from_earlier_grids() -> None:
    new = results_page._summaries([_row("SNFS", 0.02, 3, 0.981, "0.98"), _row("RigL", 0.02, 3, 0.97, "0.98")])
    main = results_page._summaries(
        [_row("SNFS", 0.02, 0, 0.979, "0.98"), _row("SNFS", 0.05, 0, 0.5, "0.5"), _row("SET", 0.02, 0, 0.5, "0.5")]
    )
    pooled = results_page._pooled(new, {"main": main})
    assert list(pooled) == [("SNFS (all seeds)", 0.02)], "a variant no earlier grid ran has nothing to pool"
    assert [row["test_accuracy"] for row in pooled[("SNFS (all seeds)", 0.02)]] == ["0.979", "0.981"]
    assert results_page._pooled(new, {}) == {}


def test_baseline_and_pooled_rows_are_compared_as_the_method_they_show() -> None:
    grouped = {
        ("SNFS (all seeds)", 0.02): [_row("SNFS", 0.02, 0, 0.981, "0.98")],
        ("SNFS_ERK (baseline: main)", 0.02): [_row("SNFS_ERK", 0.02, 0, 0.981, "0.98")],
    }
    lines = results_page._table(grouped)
    assert "| 98.2 | -0.10 |" in next(line for line in lines if line.startswith("| SNFS (all seeds) |"))
    assert "| — | — |" in next(line for line in lines if line.startswith("| SNFS_ERK (baseline: main) |"))
