"""Bad input through `sparselearning train`: one line on stderr naming the value and what is allowed, exit
status 2, no traceback, and every earlier run exactly as it was (bytes and mtimes).

Most rows run the command in this process (`sparselearning.cli.main`); a few run it as a real subprocess to
prove the exit status the shell sees. Every row points `hydra.run.dir` at (or under) an earlier finished run
where it can, which is the hostile case: a typo on the command that made the run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparselearning.cli import GROUPS, group_options
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.grow import registry as grow_registry
from sparselearning.funcs.init_scheme import registry as init_registry
from sparselearning.funcs.prune import registry as prune_registry
from sparselearning.funcs.redistribute import registry as redistribute_registry
from sparselearning.io import safe_load
from tests.hardening.conftest import (
    EarlierRuns,
    assert_nothing_lost,
    run_cli,
    snapshot,
    train_command,
)


def _allowed(names) -> str:
    return ", ".join(names)


# (override, the whole message after "error: "); every row is refused with exit status 2.
CONFIG_ROWS = [
    ("masking.density=0", "masking.density must be in (0, 1], got 0"),
    ("masking.density=-0.1", "masking.density must be in (0, 1], got -0.1"),
    ("masking.density=1.5", "masking.density must be in (0, 1], got 1.5"),
    ("masking.density=nan", "masking.density must be in (0, 1], got nan"),
    ("masking.density=abc", "masking.density must be a number in (0, 1], got 'abc'"),
    ("masking=Bogus", f"unknown masking 'Bogus'; allowed: {_allowed(group_options('masking'))}"),
    ("model=vgg16", f"unknown model 'vgg16'; allowed: {_allowed(group_options('model'))}"),
    ("dataset=ImageNet", f"unknown dataset 'ImageNet'; allowed: {_allowed(group_options('dataset'))}"),
    ("masking.sparse_init=gaussian", f"unknown masking.sparse_init 'gaussian'; allowed: {_allowed(init_registry)}"),
    ("masking.growth_mode=sideways", f"unknown masking.growth_mode 'sideways'; allowed: {_allowed(grow_registry)}"),
    ("masking.prune_mode=random", f"unknown masking.prune_mode 'random'; allowed: {_allowed(prune_registry)}"),
    (
        "masking.redistribution_mode=even",
        f"unknown masking.redistribution_mode 'even'; allowed: {_allowed(redistribute_registry)}",
    ),
    ("masking.prune_rate=-0.1", "masking.prune_rate (drop fraction) must be in [0, 1], got -0.1"),
    ("masking.prune_rate=1.5", "masking.prune_rate (drop fraction) must be in [0, 1], got 1.5"),
    ("masking.interval=0", "masking.interval (update interval) must be a whole number >= 1, got 0"),
    # the small run has 64 / 16 = 4 steps
    ("masking.end_when=5", "masking.end_when must be in 1..4 (the run's steps), got 5"),
    ("seed=-1", "seed must be a whole number >= 0, got -1"),
    ("device=tpu", "unknown device 'tpu'; allowed: auto, cpu, cuda"),
    (
        "+model._target_=tests.hardening.models.NoWeights",
        "NoWeights has no layer to mask: Masking masks the weights of nn.Linear, nn.Conv*, nn.MultiheadAttention "
        "and RNN/LSTM/GRU layers and what include=[...] names (after exclusions), and found none",
    ),
]


def _refused(capsys, arguments: list[str]) -> str:
    """Run in-process; assert exit status 2, nothing on stderr but one `error:` line; return that message."""
    code = run_cli(arguments)
    error = capsys.readouterr().err
    assert code == 2, error
    assert "Traceback" not in error
    assert error.startswith("error: ") and error.endswith("\n") and error.count("\n") == 1, error
    return error[len("error: ") : -1]


@pytest.mark.parametrize(("override", "message"), CONFIG_ROWS, ids=[row[0] for row in CONFIG_ROWS])
def test_bad_setting_over_a_finished_run(capsys, earlier_runs: EarlierRuns, unchanged, override, message) -> None:
    assert _refused(capsys, train_command(earlier_runs.rigl, override)) == message
    unchanged(hydra_records=override.split("=")[0] in GROUPS)  # group options are refused before Hydra starts


def test_lottery_masks_of_another_architecture(capsys, earlier_runs: EarlierRuns, unchanged, tmp_path) -> None:
    source = earlier_runs.lenet5 / "checkpoints" / "last.pt"
    message = _refused(
        capsys,
        train_command(tmp_path / "lottery", "masking=Lottery", f"masking.lottery_mask_path={earlier_runs.lenet5}"),
    )
    assert message == (
        f"lottery masks in {source} do not match the model: missing ['layers.0.weight', 'layers.2.weight', "
        "'layers.4.weight'], unexpected ['conv1.weight', 'conv2.weight', 'fc3.weight', 'fc4.weight']"
    )
    assert not (tmp_path / "lottery" / "checkpoints").exists()
    unchanged()


def test_lottery_mask_of_the_wrong_shape(capsys, earlier_runs: EarlierRuns, unchanged, tmp_path) -> None:
    masks = safe_load(earlier_runs.rigl / "checkpoints" / "last.pt")["masking"]["masks"]
    masks["layers.4.weight"] = torch.ones(5, 100, dtype=torch.bool)  # a 5-class head; this model has 10
    crafted = tmp_path / "masks.pt"
    torch.save({"masks": masks}, crafted)
    message = _refused(
        capsys, train_command(tmp_path / "lottery", "masking=Lottery", f"masking.lottery_mask_path={crafted}")
    )
    assert message == (
        f"lottery mask for 'layers.4.weight' in {crafted} has shape (5, 100), the model's weight has (10, 100)"
    )
    unchanged()


def _copy_with_broken_checkpoint(run: Path, destination: Path, how: str) -> Path:
    """A copy of a finished run (mtimes kept) whose `last.pt` is cut in half or replaced by random bytes."""
    shutil.copytree(run, destination)
    checkpoint = destination / "checkpoints" / "last.pt"
    content = checkpoint.read_bytes()
    broken = content[: len(content) // 2] if how == "truncated" else random.Random(0).randbytes(len(content))
    checkpoint.write_bytes(broken)
    return checkpoint


@pytest.mark.parametrize("how", ["truncated", "random-bytes"])
def test_broken_checkpoint_is_refused_and_kept(capsys, earlier_runs: EarlierRuns, tmp_path, how) -> None:
    run = tmp_path / "run"
    checkpoint = _copy_with_broken_checkpoint(earlier_runs.rigl, run, how)
    before = snapshot(run)
    message = _refused(capsys, train_command(run))
    assert message.startswith(f"cannot read checkpoint {checkpoint}: ")
    assert_nothing_lost(before, snapshot(run))  # the broken file too: nothing is deleted or overwritten


def test_checkpoint_of_another_model(capsys, earlier_runs: EarlierRuns, unchanged) -> None:
    message = _refused(capsys, train_command(earlier_runs.lenet5))  # the default model is lenet300-100
    assert message.startswith(
        f"{earlier_runs.lenet5} holds a run made with other settings: model.name 'lenet5' (this run: 'lenet300-100')"
    )
    unchanged()


def test_run_directory_under_a_regular_file(capsys, earlier_runs: EarlierRuns, unchanged) -> None:
    target = earlier_runs.rigl / "summary.json" / "run"
    message = _refused(capsys, train_command(target))
    assert message == f"cannot create hydra.run.dir={target}: {target.parent} is not a writable directory"
    unchanged(hydra_records=True)


def test_unknown_key_is_one_line(capsys, earlier_runs: EarlierRuns, unchanged) -> None:
    """A misspelt key is refused before Hydra runs: one line, exit 2, nothing written."""
    code = run_cli(train_command(earlier_runs.rigl, "masking.densty=0.1"))
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("error: Could not override 'masking.densty'.") and error.count("\n") == 1
    assert "Traceback" not in error
    unchanged(hydra_records=True)  # composition fails before Hydra writes anything


def test_cli_traceback_switch(monkeypatch, earlier_runs: EarlierRuns) -> None:
    """SPARSELEARNING_TRACEBACK=1 lets errors found before Hydra starts propagate with their traceback."""
    monkeypatch.setenv("SPARSELEARNING_TRACEBACK", "1")
    with pytest.raises(SparseLearningError, match="unknown masking 'Bogus'"):
        run_cli(train_command(earlier_runs.rigl, "masking=Bogus"))


# ---------------------------------------------------------------------------------------------- subprocess


def test_real_exit_status_from_a_subprocess(earlier_runs: EarlierRuns, unchanged, tmp_path) -> None:
    """Three kinds at once (before Hydra, inside the run, a broken file), as separate processes in parallel."""
    broken = tmp_path / "broken"
    checkpoint = _copy_with_broken_checkpoint(earlier_runs.rigl, broken, "truncated")
    broken_before = snapshot(broken)
    cases = {
        "masking=Bogus": (
            train_command(earlier_runs.rigl, "masking=Bogus"),
            f"unknown masking 'Bogus'; allowed: {_allowed(group_options('masking'))}",
        ),
        "masking.density=nan": (
            train_command(earlier_runs.rigl, "masking.density=nan"),
            "masking.density must be in (0, 1], got nan",
        ),
        "truncated last.pt": (train_command(broken), f"cannot read checkpoint {checkpoint}: "),
    }
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("SPARSELEARNING_TRACEBACK", None)
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "sparselearning", *arguments],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (arguments, _) in cases.items()
    }
    for name, process in processes.items():
        _, error = process.communicate(timeout=120)
        assert process.returncode == 2, (name, error)
        assert error.startswith(f"error: {cases[name][1]}") and error.count("\n") == 1, (name, error)
    unchanged()
    assert_nothing_lost(broken_before, snapshot(broken))


# ---------------------------------------------------------------------------------------------- divergence


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(capsys, tmp_path) -> None:
    """The model's outputs turn NaN from the first step of epoch 2 (4 steps per epoch); the check runs every
    `log_interval`=2 steps, so the run stops at step 6 and epoch 1's checkpoint is what remains."""
    run = tmp_path / "nan"
    model = ["+model._target_=tests.hardening.models.NaNAfter", "+model.good_steps=4", "optimizer.epochs=3"]
    message = _refused(capsys, train_command(run, *model))
    assert message == (
        f"training diverged: the loss became nan near step 6; the last good checkpoint is kept in "
        f"{run / 'checkpoints'}; lower optimizer.lr (now 0.1) and run again"
    )
    state = safe_load(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 4)
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    weight, mask = state["model"]["fc.weight"], state["masking"]["masks"]["fc.weight"]
    assert torch.equal(weight[~mask], torch.zeros_like(weight[~mask]))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(record["step"] for record in records) == 4, "nothing from the diverged steps is logged"
    assert not (run / "summary.json").exists()

    # Another model (one that stays finite) is another run: it may not continue this run's checkpoint.
    before = snapshot(run)
    message = _refused(capsys, train_command(run, *model[:-2], "+model.good_steps=1000", "optimizer.epochs=3"))
    assert "holds a run made with other settings: model.good_steps 4 (this run: 1000)" in message
    assert snapshot(run) == before


def test_divergence_before_any_checkpoint_does_not_claim_one(capsys, tmp_path) -> None:
    run = tmp_path / "nan-at-once"
    model = ["+model._target_=tests.hardening.models.NaNAfter", "+model.good_steps=1", "optimizer.epochs=2"]
    message = _refused(capsys, train_command(run, *model))
    assert message.startswith("training diverged: the loss became nan near step 2")
    assert "kept in" not in message or (run / "checkpoints" / "last.pt").exists()


# ---------------------------------------------------------------------------------------------- known bugs


def test_refused_setting_leaves_hydra_records_of_the_earlier_run(capsys, earlier_runs: EarlierRuns) -> None:
    before = {k: v for k, v in snapshot(earlier_runs.rigl).items() if k.startswith(".hydra/")}
    _refused(capsys, train_command(earlier_runs.rigl, "masking.density=0"))
    after = {k: v for k, v in snapshot(earlier_runs.rigl).items() if k.startswith(".hydra/")}
    assert after == before


@pytest.mark.parametrize(
    "target",
    ["tests.hardening.models.DoesNotExist", "os.system"],
)
def test_unusable_model_target_is_one_line(capsys, tmp_path, target) -> None:
    message = _refused(capsys, train_command(tmp_path / "run", f"+model._target_={target}"))
    assert message.startswith(f"cannot build model._target_={target}: ")


def test_traceback_switch_also_covers_errors_inside_the_run(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPARSELEARNING_TRACEBACK", "1")
    run_cli(train_command(tmp_path / "run", "masking.density=0"))
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning")
def test_image_too_small_for_lenet5(capsys, tmp_path) -> None:
    message = _refused(capsys, train_command(tmp_path / "run", "model=lenet5", "dataset.shape=[1,12,12]"))
    assert "12" in message and "lenet5" in message


def test_non_square_images_for_lenet300_100(capsys, tmp_path) -> None:
    assert run_cli(train_command(tmp_path / "run", "dataset.shape=[1,28,14]")) == 0, capsys.readouterr().err
