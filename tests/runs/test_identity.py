"""Run identity: which settings count, how they hash, how differences read."""

from __future__ import annotations

from sparselearning.runs.identity import (
    describe_differences,
    differences,
    directory_hash,
    flatten,
    group_hash,
    run_settings,
)

CONFIG = {
    "seed": 0,
    "device": "auto",
    "log_interval": 100,
    "progress": True,
    "plots": True,
    "exp_name": "${masking.name}",
    "dataset": {"name": "MNIST", "batch_size": 100, "test_batch_size": 1000, "root": None},
    "model": {"name": "lenet300-100"},
    "masking": {"name": "SET", "density": 0.1, "prune_rate": 0.3},
    "optimizer": {"name": "SGD", "lr": 0.1, "betas": (0.9, 0.999)},
    "hydra": {"run": {"dir": "somewhere"}},
}


def test_flatten_gives_dotted_keys_and_keeps_lists_as_leaves() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_settings_leave_out_what_only_changes_presentation() -> None:
    settings = run_settings(CONFIG, world_size=2)
    assert settings == {
        "dataset.batch_size": 100,
        "dataset.name": "MNIST",
        "masking.density": 0.1,
        "masking.name": "SET",
        "masking.prune_rate": 0.3,
        "model.name": "lenet300-100",
        "optimizer.betas": [0.9, 0.999],
        "optimizer.lr": 0.1,
        "optimizer.name": "SGD",
        "seed": 0,
        "world_size": 2,
    }


def test_presentation_settings_do_not_change_the_hash_but_every_other_one_does() -> None:
    base = run_settings(CONFIG)
    shown_differently = run_settings({**CONFIG, "log_interval": 7, "plots": False, "device": "cpu"})
    assert directory_hash(shown_differently) == directory_hash(base)
    other_lr = run_settings({**CONFIG, "optimizer": {**CONFIG["optimizer"], "lr": 0.01}})
    assert directory_hash(other_lr) != directory_hash(base)
    assert directory_hash(run_settings(CONFIG, world_size=2)) != directory_hash(base)


def test_the_directory_hash_leaves_out_what_the_directory_spells_out() -> None:
    base = run_settings(CONFIG)
    other_seed = run_settings({**CONFIG, "seed": 3})
    other_density = run_settings({**CONFIG, "masking": {**CONFIG["masking"], "density": 0.05}})
    assert directory_hash(other_seed) == directory_hash(base) == directory_hash(other_density)
    assert group_hash(other_seed) == group_hash(base)
    assert group_hash(other_density) != group_hash(base)


def test_differences_name_old_and_new_values() -> None:
    old = run_settings(CONFIG)
    new = run_settings({**CONFIG, "optimizer": {**CONFIG["optimizer"], "lr": 0.01}})
    found = differences(old, new)
    assert found == {"optimizer.lr": (0.1, 0.01)}
    assert describe_differences(found) == "optimizer.lr 0.1 (this run: 0.01)"


def test_lenient_differences_ignore_settings_added_later_with_empty_defaults() -> None:
    old = run_settings(CONFIG)
    new = {**old, "masking.exclude": [], "masking.sparse_compute": False}
    assert differences(old, new, lenient=True) == {}
    assert set(differences(old, new)) == {"masking.exclude", "masking.sparse_compute"}
    assert differences(old, {**new, "masking.exclude": ["fc1"]}, lenient=True) == {"masking.exclude": (None, ["fc1"])}


def test_many_differences_are_cut_to_one_readable_line() -> None:
    found = {f"k{i}": (i, i + 1) for i in range(9)}
    assert describe_differences(found, limit=2) == "k0 0 (this run: 1), k1 1 (this run: 2), and 7 more"
