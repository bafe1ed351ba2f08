"""A result always belongs to the settings that produced it: sweeps split, changed settings are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparselearning.runs.directory import RunLock
from sparselearning.runs.masks import unpack_masks
from tests.hardening.conftest import run_cli, snapshot, train_command
from tests.train.conftest import SMALL


def _summaries(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))}


def test_a_learning_rate_sweep_gives_two_runs_with_different_results(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = ["train", "-m", *SMALL, "masking=SET", "optimizer.lr=0.1,0.01", f"hydra.sweep.dir={sweep}"]
    assert run_cli(command) == 0
    summaries = _summaries(sweep)
    assert len(summaries) == 2
    first, second = summaries.values()
    assert {first["settings"]["optimizer.lr"], second["settings"]["optimizer.lr"]} == {0.1, 0.01}
    assert first["test_loss"] != second["test_loss"]
    assert all(name.startswith("seed_0-") for name in summaries)


def test_a_changed_setting_in_an_existing_run_directory_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run, "masking=SET")) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert run_cli(train_command(run, "masking=SET", "optimizer.lr=0.01")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "holds a run made with other settings: optimizer.lr 0.1 (this run: 0.01)" in error[0]
    assert snapshot(run) == before


def test_more_epochs_do_not_continue_the_old_checkpoint(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run)) == 0
    capsys.readouterr()
    assert run_cli(train_command(run, "optimizer.epochs=2")) == 2
    assert "optimizer.epochs 1 (this run: 2)" in capsys.readouterr().err


def test_the_lottery_shuffle_control_trains_in_its_own_run(tmp_path: Path, monkeypatch) -> None:
    ticket = tmp_path / "ticket"
    assert run_cli(train_command(ticket, "masking=SET")) == 0
    monkeypatch.chdir(tmp_path)
    lottery = ["train", *SMALL, "masking=Lottery", f"masking.lottery_mask_path={ticket}"]
    assert run_cli(lottery) == 0
    assert run_cli([*lottery, "masking.shuffle=true"]) == 0
    summaries = _summaries(tmp_path / "runs")
    assert len(summaries) == 2
    plain, shuffled = (s for s in summaries.values())
    assert {plain["settings"]["masking.shuffle"], shuffled["settings"]["masking.shuffle"]} == {False, True}
    files = sorted((tmp_path / "runs").rglob("final_masks.pt"))
    masks = [unpack_masks(torch.load(path, weights_only=True), str(path)) for path in files]
    assert any(not torch.equal(masks[0][name], masks[1][name]) for name in masks[0])


def test_the_same_settings_again_only_re_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run)) == 0
    first = json.loads((run / "summary.json").read_text())
    assert run_cli(train_command(run, "log_interval=3", "plots=false")) == 0  # presentation only
    again = json.loads((run / "summary.json").read_text())
    assert again["steps"] == first["steps"] and again["test_accuracy"] == first["test_accuracy"]
    assert again["settings_hash"] == first["settings_hash"]


def test_summary_and_identity_file_record_the_settings(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert run_cli(train_command(run, "optimizer.lr=0.05")) == 0
    summary = json.loads((run / "summary.json").read_text())
    identity = json.loads((run / "identity.json").read_text())
    assert summary["settings"] == identity["settings"]
    assert summary["settings"]["optimizer.lr"] == 0.05 and summary["settings"]["world_size"] == 1
    assert "log_interval" not in summary["settings"]
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["settings"] == summary["settings"]


def test_a_folder_of_other_files_is_refused_and_kept(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert run_cli(train_command(tmp_path)) == 2
    assert "not empty and not a sparselearning run (it holds notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_second_trainer_on_the_same_directory_fails_at_once(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    with RunLock(run):
        assert run_cli(train_command(run)) == 2
    assert "is in use: process" in capsys.readouterr().err
    assert not (run / "metrics.jsonl").exists()


@pytest.mark.parametrize("name", ["config.yaml", "summary.json", "final_masks.pt", "metrics.jsonl"])
def test_a_planted_link_in_the_run_directory_is_never_written_through(tmp_path: Path, name: str, capsys) -> None:
    outside = tmp_path / "outside"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to(outside)
    assert run_cli(train_command(run)) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert outside.read_text() == "precious"


def test_a_linked_plots_folder_is_not_followed(tmp_path: Path, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "plots").symlink_to(elsewhere, target_is_directory=True)
    assert run_cli(train_command(run, "plots=true")) == 2
    assert list(elsewhere.iterdir()) == []
