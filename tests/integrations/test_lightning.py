"""The Lightning callback trains exactly as the native loop does: same masks and weights, under gradient
accumulation too, across a checkpointed interruption, and identically on two DDP ranks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.integrations.lightning import SparseTraining
from tests.helpers import torchrun_command
from tests.integrations.lightning_setup import (
    Classifier,
    batches,
    lenet,
    loader,
    optimizer_for,
    trainer,
)

STEPS = 120


def native(data: list, accumulate: int = 1, **options: object) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The reference: the hand-written loop of the README with `methods.rigl`."""
    model = lenet()
    optimizer = optimizer_for(model)
    masking = methods.rigl(model, optimizer, density=0.1, total_steps=len(data) // accumulate, **options)
    for start in range(0, len(data), accumulate):
        optimizer.zero_grad()
        for inputs, labels in data[start : start + accumulate]:
            (nn.functional.cross_entropy(model(inputs), labels) / accumulate).backward()
        masking.step()
    return model, dict(masking.mask_dict)


def assert_same(lightning_model: nn.Module, callback: SparseTraining, model: nn.Module, masks: dict) -> None:
    lightning_masks = {name.removeprefix("model."): mask for name, mask in callback.masking.mask_dict.items()}
    masks = {name.removeprefix("model."): mask for name, mask in masks.items()}
    assert lightning_masks.keys() == masks.keys()
    for name in masks:
        assert torch.equal(lightning_masks[name], masks[name]), name
    for (name, ours), theirs in zip(lightning_model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0, msg=name)


def test_same_masks_and_weights_as_the_native_loop(tmp_path: Path) -> None:
    data = batches(STEPS)
    model, masks = native(data, update_frequency=50)
    callback = SparseTraining("RigL", density=0.1, update_frequency=50)
    module = Classifier(lenet())
    trainer([callback], str(tmp_path), max_epochs=1).fit(module, loader(data))
    assert callback.masking.mask_step == STEPS
    assert callback.masking.total_steps == STEPS, "total_steps comes from the trainer"
    assert callback.masking.stats.total_density == pytest.approx(0.1, abs=1e-4)
    changed = sum(int((masks[n] != lenet_mask).sum()) for n, lenet_mask in _initial_masks().items())
    assert changed > 0, "the run must include mask updates that changed something"
    assert_same(module.model, callback, model, masks)
    assert "step" not in module.optimizers().optimizer.__dict__, "the optimizer gets its own step back"


def _initial_masks() -> dict[str, torch.Tensor]:
    model = lenet()
    return dict(methods.rigl(model, optimizer_for(model), density=0.1, total_steps=STEPS).mask_dict)


def test_gradient_accumulation_counts_optimizer_steps(tmp_path: Path) -> None:
    data = batches(128)
    model, masks = native(data, accumulate=4, update_frequency=10)
    callback = SparseTraining("RigL", density=0.1, update_frequency=10)
    module = Classifier(lenet())
    trainer([callback], str(tmp_path), max_epochs=1, accumulate_grad_batches=4).fit(module, loader(data))
    assert callback.masking.mask_step == 32
    assert_same(module.model, callback, model, masks)


class StopAfterEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def test_a_fit_resumed_from_a_lightning_checkpoint_ends_as_the_uninterrupted_one(tmp_path: Path) -> None:
    data = loader(batches(30))
    straight = SparseTraining("RigL", density=0.1, update_frequency=25)
    straight_module = Classifier(lenet())
    trainer([straight], str(tmp_path / "a"), max_epochs=4).fit(straight_module, data)

    first = SparseTraining("RigL", density=0.1, update_frequency=25)
    stopped = trainer([first, StopAfterEpoch(1)], str(tmp_path / "b"), max_epochs=4)
    stopped.fit(Classifier(lenet()), data)
    assert first.masking.mask_step == 60
    checkpoint = tmp_path / "half.ckpt"
    stopped.save_checkpoint(checkpoint)

    resumed = SparseTraining("RigL", density=0.1, update_frequency=25)
    resumed_module = Classifier(lenet(seed=7))  # other initial weights: everything must come from the checkpoint
    trainer([resumed], str(tmp_path / "c"), max_epochs=4).fit(resumed_module, data, ckpt_path=checkpoint)
    assert resumed.masking.mask_step == straight.masking.mask_step == 120
    assert_same(resumed_module.model, resumed, straight_module.model, dict(straight.masking.mask_dict))


def test_masks_are_refused_onto_weights_they_were_not_saved_with(tmp_path: Path) -> None:
    data = loader(batches(10))
    first = SparseTraining("RigL", density=0.1, update_frequency=5)
    fitted = trainer([first], str(tmp_path / "a"), max_epochs=1)
    fitted.fit(Classifier(lenet()), data)
    state = first.state_dict()
    state["fingerprint"] = {name: value + 1.0 for name, value in state["fingerprint"].items()}
    other = SparseTraining("RigL", density=0.1, update_frequency=5)
    other.load_state_dict(state)
    with pytest.raises(SparseLearningError, match="belong to other weights"):
        trainer([other], str(tmp_path / "b"), max_epochs=1).fit(Classifier(lenet()), data)


def test_metrics_are_logged_once_per_optimizer_step(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    data = loader(batches(8))
    callback = SparseTraining("SET", density=0.2, update_frequency=4)
    logger = CSVLogger(str(tmp_path), name="logs")
    trainer([callback], str(tmp_path), max_epochs=1, logger=logger, log_every_n_steps=1).fit(Classifier(lenet()), data)
    lines = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    for key in ("sparsity/density", "sparsity/itop_rate", "sparsity/inference_flops"):
        assert key in header, key
    density = [float(row.split(",")[header.index("sparsity/density")]) for row in lines[1:]]
    assert len(density) == 8 and all(value == pytest.approx(0.2, abs=1e-3) for value in density)
    flops = float(lines[-1].split(",")[header.index("sparsity/inference_flops")])
    assert 0.15 < flops < 0.3, "LeNet-300-100 at 20% density: its FLOPs are almost all in masked weights"


def test_bad_input_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError, match="unknown method 'RigLL'"):
        SparseTraining("RigLL", density=0.1)
    with pytest.raises(SparseLearningError, match="density"):
        trainer([SparseTraining("RigL", density=1.5)], str(tmp_path), max_epochs=1).fit(
            Classifier(lenet()), loader(batches(2))
        )


def test_lightning_ddp_keeps_masks_identical_on_both_ranks(tmp_path: Path) -> None:
    command = torchrun_command(2, "tests.integrations.lightning_ddp_worker", str(tmp_path))
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert first["mask_step"] == second["mask_step"] == 20
    assert first["changed"] > 0, "masks changed during the run"
    for name in first["masks"]:
        assert torch.equal(first["masks"][name], second["masks"][name]), name
        assert torch.equal(first["weights"][name], second["weights"][name]), name
