"""Runs are averaged only when their identity settings are equal but for the seed; rows of one method variant
that differ in other settings are separate and say what differs; `--pool KEY` averages over a setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselearning.errors import SparseLearningError
from sparselearning.report.collect import RunRecord
from sparselearning.report.grouping import assign_rows, differing_keys
from sparselearning.runs.identity import group_hash
from tests.report.runs_on_disk import CONFIG, report, settings, summary, write_run


def _lr_sweep(root: Path) -> Path:
    """SET at lr 0.1 (seeds 0 and 1, accuracies 0.5 and 0.7) and at lr 0.01 (seed 0, 0.9): settings in the
    summaries, as the training loop writes them now."""
    for lr, seed, accuracy in ((0.1, 0, 0.5), (0.1, 1, 0.7), (0.01, 0, 0.9)):
        content = summary(accuracy=accuracy, seed=seed, settings=settings(lr=lr, seed=seed))
        write_run(root / f"lr_{lr}" / f"seed_{seed}", content, config=None)
    return root


def test_runs_that_differ_in_a_setting_are_separate_rows_saying_what_differs(tmp_path: Path) -> None:
    outcome = report(_lr_sweep(tmp_path / "sweep"), out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    rows = outcome.table_rows()
    assert sorted(rows) == ["SET \\[optimizer.lr=0.01\\]", "SET \\[optimizer.lr=0.1\\]"]
    assert rows["SET \\[optimizer.lr=0.1\\]"][0] == "60.00 ± 14.14 (n=2)"
    assert rows["SET \\[optimizer.lr=0.01\\]"][0] == "90.00 ± — (n=1)"
    csv_rows = outcome.csv_rows()
    assert {row["variant"] for row in csv_rows} == {"SET"}
    assert {row["row"] for row in csv_rows} == {"SET [optimizer.lr=0.1]", "SET [optimizer.lr=0.01]"}
    groups = {row["row"]: set() for row in csv_rows}
    for row in csv_rows:
        groups[row["row"]].add(row["group"])
    assert groups == {
        "SET [optimizer.lr=0.1]": {group_hash(settings(lr=0.1))},
        "SET [optimizer.lr=0.01]": {group_hash(settings(lr=0.01))},
    }
    assert "SET [optimizer.lr=0.1]" in outcome.text("report.html")


def test_pool_averages_over_a_setting_on_purpose(tmp_path: Path) -> None:
    outcome = report(_lr_sweep(tmp_path / "sweep"), "--pool", "optimizer.lr", out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    assert outcome.table_rows() == {"SET": ["70.00 ± 20.00 (n=3)", "0.2000", "0.1000"]}


def test_a_pool_key_no_run_has_is_one_error_line(tmp_path: Path) -> None:
    outcome = report(_lr_sweep(tmp_path / "sweep"), "--pool", "optimizer.lrr", out=tmp_path / "out")
    assert outcome.status == 2
    assert outcome.err == [
        "error: --pool optimizer.lrr: no run has the setting 'optimizer.lrr'; settings are e.g. "
        "masking.density, masking.name, masking.sparse_init, optimizer.lr"
    ]


def test_runs_equal_but_for_seed_and_density_share_one_row(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for density in (0.05, 0.1):
        for seed in (0, 1):
            content = summary(density=density, seed=seed, settings=settings(seed=seed, density=density))
            write_run(root / f"d{density}" / f"s{seed}", content, config=None)
    outcome = report(root, out=tmp_path / "out")
    rows = outcome.table_rows()
    assert list(rows) == ["SET"]
    assert rows["SET"][0].endswith("(n=2)") and rows["SET"][3].endswith("(n=2)")


def test_world_size_splits_rows(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for world_size in (1, 2):
        content = summary(settings=settings(world_size=world_size))
        write_run(root / f"w{world_size}", content, config=None)
    assert sorted(report(root, out=tmp_path / "out").table_rows()) == [
        "SET \\[world_size=1\\]",
        "SET \\[world_size=2\\]",
    ]


def test_settings_come_from_config_yaml_when_the_summary_lacks_them(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root / "a", summary(accuracy=0.5), config=CONFIG)
    write_run(root / "b", summary(accuracy=0.7), config=CONFIG.replace("seed: 0", "seed: 1"))
    write_run(root / "c", summary(accuracy=0.9), config=CONFIG.replace("lr: 0.1", "lr: 0.05"))
    # Settings that only change how a run is shown or logged never split rows.
    write_run(root / "d", summary(accuracy=0.3), config=CONFIG.replace("seed: 0", "seed: 2\nlog_interval: 7"))
    rows = report(root, out=tmp_path / "out").table_rows()
    assert rows["SET \\[optimizer.lr=0.1\\]"][0] == "50.00 ± 20.00 (n=3)"
    assert rows["SET \\[optimizer.lr=0.05\\]"][0] == "90.00 ± — (n=1)"


def _record(name: str, **extra: object) -> RunRecord:
    return RunRecord(Path(name), summary(), settings=settings(**extra))


def test_labels_name_at_most_three_differing_keys_and_stay_unique() -> None:
    runs = [
        _record("a", **{"a.x": 1, "b.x": 1, "c.x": 1, "d.x": 1}),
        _record("b", **{"a.x": 2, "b.x": 2, "c.x": 2, "d.x": 2}),
        _record("c", **{"a.x": 1, "b.x": 1, "c.x": 1, "d.x": 2}),
        _record("d"),
    ]
    assign_rows(runs)
    labels = [run.row for run in runs]
    assert labels[1] == "SET [a.x=2, b.x=2, c.x=2, +1 more]"
    assert labels[3] == "SET [a.x=—, b.x=—, c.x=—, +1 more]"
    # a and c differ only in d.x, beyond the keys shown: their hash keeps them apart.
    assert labels[0].startswith("SET [a.x=1, b.x=1, c.x=1, +1 more] #")
    assert labels[2].startswith("SET [a.x=1, b.x=1, c.x=1, +1 more] #")
    assert len(set(labels)) == 4


def test_a_method_named_like_a_label_does_not_merge_with_it() -> None:
    runs = [_record("a", **{"optimizer.lr": 0.01}), _record("b")]
    impostor = RunRecord(Path("c"), summary(method="SET [optimizer.lr=0.01]"), settings=settings())
    assign_rows([*runs, impostor])
    assert len({run.row for run in [*runs, impostor]}) == 3


def test_differing_keys_counts_an_absent_key_as_a_value() -> None:
    assert differing_keys([{"a": 1, "b": None}, {"a": 1}]) == ["b"]
    assert differing_keys([{"a": [1, 2]}, {"a": [1, 2]}]) == []
    assert differing_keys([{"a": 1, "seed": 1}, {"a": 2, "seed": 2}], ignore=["seed"]) == ["a"]


def test_runs_without_settings_group_by_variant_as_before() -> None:
    runs = [RunRecord(Path("a"), summary()), RunRecord(Path("b"), summary(seed=1))]
    assign_rows(runs)
    assert [run.row for run in runs] == ["SET", "SET"]
    assert runs[0].group == runs[1].group
    with pytest.raises(SparseLearningError, match="--pool optimizer.lr: no run has the setting"):
        assign_rows(runs, ["optimizer.lr"])


def test_a_setting_older_runs_lack_counts_as_unset_where_it_is_empty() -> None:
    old = _record("old")
    new = _record("new", **{"masking.keep_grown_momentum": False, "masking.warmup": 0})
    changed = _record("changed", **{"masking.keep_grown_momentum": True})
    assign_rows([old, new, changed])
    assert old.row == new.row == "SET [masking.keep_grown_momentum=—]"
    assert old.group == new.group != changed.group
    assert changed.row == "SET [masking.keep_grown_momentum=true]"


def test_a_setting_every_run_has_is_compared_exactly() -> None:
    runs = [_record("a", **{"masking.end_when": None}), _record("b", **{"masking.end_when": 0})]
    assign_rows(runs)
    assert [run.row for run in runs] == ["SET [masking.end_when=null]", "SET [masking.end_when=0]"]


def test_a_long_value_keeps_its_end_in_the_label() -> None:
    base = "/somewhere/results/mnist_lenet300_100/runs/Pruning"
    runs = [_record(f"r{seed}", **{"masking.lottery_mask_path": f"{base}/density_0.05/seed_{seed}"}) for seed in (0, 1)]
    assign_rows(runs)
    assert [run.row for run in runs] == [
        "SET [masking.lottery_mask_path=…00_100/runs/Pruning/density_0.05/seed_0]",
        "SET [masking.lottery_mask_path=…00_100/runs/Pruning/density_0.05/seed_1]",
    ]
