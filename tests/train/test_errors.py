"""Clear one-line errors for bad settings, missing data and broken checkpoints; nothing earlier is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselearning.cli import main
from sparselearning.errors import SparseLearningError
from sparselearning.train.loop import train
from tests.train.conftest import compose_config


def _exit_and_stderr(arguments: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argument", "group", "some_allowed"),
    [
        ("masking=Bogus", "masking", "RigL"),
        ("model=vgg", "model", "wrn-22-2"),
        ("dataset=ImageNet", "dataset", "FashionMNIST"),
        ("optimizer=LBFGS", "optimizer", "Adam"),
        ("masking=RigL,Nope", "masking", "SNFS"),
    ],
)
def test_unknown_group_option_lists_the_valid_ones(capsys, argument: str, group: str, some_allowed: str) -> None:
    code, error = _exit_and_stderr(["train", argument], capsys)
    assert code == 2
    assert error.startswith(f"error: unknown {group} ")
    assert some_allowed in error
    assert error.count("\n") == 1


def test_unknown_command(capsys) -> None:
    code, error = _exit_and_stderr(["fly"], capsys)
    assert code == 2 and "unknown command 'fly'; allowed: train, report, export" in error


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("masking.density=0", "masking.density must be in (0, 1], got 0"),
        ("masking.density=1.5", "masking.density must be in (0, 1], got 1.5"),
        ("masking.growth_mode=sideways", "unknown masking.growth_mode 'sideways'; allowed:"),
        ("masking.prune_rate=2", "masking.prune_rate (drop fraction) must be in [0, 1], got 2"),
        ("masking.interval=0", "masking.interval (update interval) must be a whole number >= 1, got 0"),
        ("masking.end_when=100000", "masking.end_when must be in 1..4 (the run's steps), got 100000"),
        ("optimizer.lr=-1", "optimizer.lr must be a number > 0, got -1"),
        ("optimizer.lr=abc", "optimizer.lr must be a number > 0, got 'abc'"),
    ],
)
def test_bad_settings_are_refused_before_any_work(small_config, tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(SparseLearningError) as raised:
        train(small_config(override), tmp_path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "checkpoints").exists()


def test_lottery_without_a_mask_path(small_config, tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError, match="needs masking.lottery_mask_path"):
        train(small_config("masking=Lottery"), tmp_path)


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    cfg = compose_config(["dataset=CIFAR10", f"dataset.root={empty}", "progress=false"])
    with pytest.raises(SparseLearningError) as raised:
        train(cfg, tmp_path / "run")
    assert "cifar-10-python.tar.gz" in str(raised.value)


def test_corrupt_checkpoint_is_refused_and_earlier_files_stay(small_config, tmp_path: Path) -> None:
    train(small_config(), tmp_path)
    best = (tmp_path / "checkpoints" / "best.pt").read_bytes()
    summary = (tmp_path / "summary.json").read_text()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(SparseLearningError, match="cannot read checkpoint"):
        train(small_config(), tmp_path)
    assert (tmp_path / "checkpoints" / "best.pt").read_bytes() == best
    assert (tmp_path / "summary.json").read_text() == summary


def test_checkpoint_of_another_run_is_refused(small_config, tmp_path: Path) -> None:
    train(small_config("masking=SET"), tmp_path)
    with pytest.raises(
        SparseLearningError, match=r"holds a run made with other settings: .*masking.name 'SET' \(this run: 'RigL'\)"
    ):
        train(small_config("masking=RigL"), tmp_path)
