"""The experiment grids expand to the planned runs, and a miniature grid runs end to end into a report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from experiments.run_grid import REPO, _command, execute, main, plan
from sparselearning.cli import check_composes
from sparselearning.errors import SparseLearningError
from sparselearning.report.command import main as report_main

GRIDS = REPO / "experiments" / "grids"


def test_mnist_grid_expands_to_every_method_density_and_seed() -> None:
    runs = plan(GRIDS / "mnist_lenet300_100.yaml")
    assert len(runs) == 3 + 4 * 12 * 3  # dense per seed; 12 sparse variants x 4 densities x 3 seeds
    assert [r.density for r in runs[3:]][:36] == [0.05] * 36, "the 5% column comes first"
    lottery = [r for r in runs if r.method == "Lottery"]
    assert all(r.after is not None and r.after.parts[-3] == "Pruning" for r in lottery)
    rigl = next(r for r in runs if r.method == "RigL_ERK" and r.density == 0.02 and r.seed == 1)
    assert {
        "masking=RigL",
        "masking.sparse_init=erdos-renyi-kernel",
        "masking.density=0.02",
        "seed=1",
        "optimizer.epochs=100",
        "dataset.val_fraction=0.1",
    } <= set(rigl.overrides)


def test_fashion_grid_and_filters() -> None:
    runs = plan(GRIDS / "fashion_mnist_lenet5.yaml", densities=[0.05], methods=["RigL_ERK", "SNFS"], seeds=[0])
    assert [(r.method, r.density, r.seed) for r in runs] == [("RigL_ERK", 0.05, 0), ("SNFS", 0.05, 0)]


def test_dry_run_lists_the_runs(capsys) -> None:
    assert main([str(GRIDS / "mnist_lenet300_100.yaml"), "--dry-run", "--densities", "0.05", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "RigL_ERK" in out and out.strip().endswith("done")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nope.yaml"], "error: no grid file nope.yaml; the grids are "),
        (["--methods", "Bogus,SNFS"], "error: --methods Bogus not in this grid; allowed: RigL_ERK_per_epoch, "),
        (["--densities", "0.05"], "error: --densities 0.05 not in this grid; allowed: 0.02\n"),
        (["--seeds", "0,3"], "error: --seeds 0 not in this grid; allowed: 3, 4, 5\n"),
        (["--seeds", "x"], "error: --seeds takes comma-separated ints, got 'x'\n"),
    ],
)
def test_bad_grid_arguments_get_one_line_and_exit_2(capsys, arguments: list[str], message: str) -> None:
    grid = [] if arguments[0].endswith(".yaml") else [str(GRIDS / "mnist_more_seeds.yaml")]
    assert main([*grid, *arguments, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert captured.out == ""


def test_miniature_grid_runs_and_reports(tmp_path: Path) -> None:
    grid = {
        "name": "mini",
        "output": str(tmp_path / "runs"),
        "common": [
            "dataset=Synthetic",
            "dataset.train_size=64",
            "dataset.val_size=32",
            "dataset.test_size=32",
            "dataset.batch_size=16",
            "optimizer.epochs=2",
            "progress=false",
            "plots=false",
            "masking.interval=2",
        ],
        "densities": [0.1],
        "seeds": [0],
        "methods": {"RigL": ["masking=RigL"], "SET": ["masking=SET"]},
    }
    grid_file = tmp_path / "mini.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    runs = plan(grid_file)
    assert execute(runs, jobs=2) == 0
    assert all(run.done for run in runs)
    assert execute(runs, jobs=2) == 0, "a second call finds everything done"
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    csv_lines = (tmp_path / "report" / "runs.csv").read_text().splitlines()
    assert len(csv_lines) == 3
    assert len(list((tmp_path / "report").glob("*.png"))) == 5


@pytest.mark.parametrize(
    "grid", ["mnist_ablations.yaml", "mnist_two_percent.yaml", "mnist_rigl_interval.yaml", "mnist_more_seeds.yaml"]
)
def test_ablation_grid_keeps_the_main_recipe_and_every_variant_composes(grid: str) -> None:
    main_grid = yaml.safe_load((GRIDS / "mnist_lenet300_100.yaml").read_text())
    ablations = yaml.safe_load((GRIDS / grid).read_text())
    assert ablations["common"] == main_grid["common"], "an ablation changes the method, never the recipe"
    runs = plan(GRIDS / grid)
    assert len(runs) == 3 * len(ablations["methods"])
    for run in runs[::3]:
        check_composes(run.overrides)  # raises on a misspelt key or a bad value
    with pytest.raises(SparseLearningError, match="keep_grown_mom"):
        check_composes(["masking=RigL", "masking.keep_grown_mom=true"])


def test_learning_rate_grid_changes_only_the_learning_rate_of_the_main_fashion_recipe() -> None:
    main_grid = yaml.safe_load((GRIDS / "fashion_mnist_lenet5.yaml").read_text())
    lr_grid = yaml.safe_load((GRIDS / "fashion_mnist_lr.yaml").read_text())
    changed = [(a, b) for a, b in zip(main_grid["common"], lr_grid["common"], strict=True) if a != b]
    assert changed == [("optimizer.lr=0.1", "optimizer.lr=0.05")]
    for name, overrides in lr_grid["methods"].items():
        assert overrides == main_grid["methods"][name.removesuffix("_lr0.05")], name
    runs = plan(GRIDS / "fashion_mnist_lr.yaml")
    assert len(runs) == 3 * len(lr_grid["methods"])
    for run in runs[::3]:
        check_composes(run.overrides)


def test_more_seeds_grid_reruns_earlier_variants_unchanged_on_new_seeds() -> None:
    more = yaml.safe_load((GRIDS / "mnist_more_seeds.yaml").read_text())
    sources = [
        yaml.safe_load((GRIDS / name).read_text()) for name in ("mnist_lenet300_100.yaml", "mnist_two_percent.yaml")
    ]
    for name, overrides in more["methods"].items():
        matches = [source for source in sources if source["methods"].get(name) == overrides]
        assert len(matches) == 1, f"{name} must be one earlier grid's variant, unchanged"
        assert not set(more["seeds"]) & set(matches[0]["seeds"]), f"{name} repeats a seed already run"
        assert more["densities"][0] in matches[0]["densities"]


def test_commands_name_paths_inside_the_repository_relative_to_it() -> None:
    runs = plan(GRIDS / "mnist_lenet300_100.yaml", densities=[0.05], methods=["Pruning", "Lottery"], seeds=[0])
    lottery = next(run for run in runs if run.method == "Lottery")
    command = _command(lottery)
    assert "hydra.run.dir=results/mnist_lenet300_100/runs/Lottery/density_0.05/seed_0" in command
    assert "masking.lottery_mask_path=results/mnist_lenet300_100/runs/Pruning/density_0.05/seed_0" in command
    assert lottery.run_dir.is_absolute()  # the runner itself still checks the real folder


def test_nm_grid_keeps_the_main_recipe_and_runs_each_pattern_once_per_seed_without_a_density() -> None:
    main_grid = yaml.safe_load((GRIDS / "mnist_lenet300_100.yaml").read_text())
    nm_grid = yaml.safe_load((GRIDS / "mnist_nm.yaml").read_text())
    assert nm_grid["common"] == main_grid["common"], "the N:M grid changes the method, never the recipe"
    runs = plan(GRIDS / "mnist_nm.yaml")
    assert [(run.method, run.density, run.seed) for run in runs] == [
        (name, None, seed) for name in ("NM_2_4", "NM_1_4") for seed in (0, 1, 2)
    ]
    for run in runs:
        assert not any(item.startswith("masking.density") for item in run.overrides)
    for run in runs[::3]:
        check_composes(run.overrides)  # raises on a misspelt key or a bad value


@pytest.mark.parametrize(
    ("grid", "main", "runs"),
    [("mnist_srigl.yaml", "mnist_lenet300_100.yaml", 9), ("fashion_mnist_srigl.yaml", "fashion_mnist_lenet5.yaml", 6)],
)
def test_srigl_grids_keep_the_recipe_of_the_grid_they_are_compared_with(grid: str, main: str, runs: int) -> None:
    srigl = yaml.safe_load((GRIDS / grid).read_text())
    assert srigl["common"] == yaml.safe_load((GRIDS / main).read_text())["common"]
    planned = plan(GRIDS / grid)
    assert len(planned) == runs
    check_composes(planned[0].overrides)
