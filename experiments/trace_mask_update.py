"""Trace what one mask update does to the loss, and how much of it the newly grown weights cause.

    .venv/bin/python -m experiments.trace_mask_update --after 300 dataset=FashionMNIST model=lenet5 \\
        optimizer.lr=0.1 masking=RigL masking.density=0.02 seed=1 [more Hydra overrides]

Trains the configuration step by step (no run directory, nothing written) up to the first mask update at or
after optimizer step `--after`, takes the optimizer step that follows it, and on the next batch prints the loss
as trained and the loss with only the weights grown at that update set back to zero. When the second is close to
the loss before the update and the first is far above it, the update's grown weights (not the dropped ones)
moved the network. Written to explain the Fashion-MNIST 2% collapses (`experiments/grids/fashion_mnist_lr.yaml`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from sparselearning.cli import check_composes
from sparselearning.errors import SparseLearningError
from sparselearning.train.loop import Run


@dataclass
class UpdateTrace:
    """Losses around one mask update, all on the same batch: the one after the optimizer step that follows it."""

    update_step: int
    loss_before_update: float
    loss_after_step: float
    loss_without_grown: float
    grown: dict[str, int]
    dropped: dict[str, int]
    largest_grown: dict[str, float]
    largest_kept: dict[str, float]


def _loss(run: Run, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    if run.memory_format is not None:
        inputs = inputs.contiguous(memory_format=run.memory_format)
    with torch.no_grad():
        return float(run.criterion(run.network(inputs), labels))


def _largest(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer, the largest |w| among the positions of `masks` (0 where there are none)."""
    return {n: float(weights[n].detach()[m].abs().max()) if m.any() else 0.0 for n, m in masks.items()}


def trace(overrides: list[str], after: int) -> UpdateTrace:
    """Train `overrides` up to the first mask update at or after step `after` and measure the step that follows.

    :param overrides: Hydra overrides of `sparselearning train` (the run directory is a temporary one)
    :param after: the first optimizer step from which a mask update is traced
    :return: the losses and grown-weight sizes around that update
    """
    with initialize_config_module("sparselearning.conf", version_base=None):
        cfg = compose("config", overrides=[*overrides, "resume=false", "progress=false"])
    with tempfile.TemporaryDirectory() as scratch:
        run = Run(cfg, Path(scratch))
        masking = run.masking
        before_update: dict[str, torch.Tensor] = {}
        weights_before: dict[str, torch.Tensor] = {}
        update_step = -1
        run.network.train()
        for epoch in range(run.schedule.epochs):
            run.train_loader.set_epoch(epoch)
            for inputs, labels in run.train_loader:
                if update_step >= 0 and masking.mask_step > update_step + 1:
                    return _measure(run, inputs, labels, before_update, weights_before, update_step)
                if update_step < 0 and masking.mask_step >= after and masking.is_update_step():
                    before_update = {name: mask.clone() for name, mask in masking.mask_dict.items()}
                    weights_before = {name: value.clone() for name, value in run.model.state_dict().items()}
                    update_step = masking.mask_step
                run.train_step(inputs, labels)
    raise SparseLearningError(f"no mask update at or after step {after} in this run ({run.schedule.total_steps} steps)")


def _loss_with(run: Run, state: dict[str, torch.Tensor], inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The loss with the model's tensors temporarily replaced by `state` (restored afterwards)."""
    current = {name: value.clone() for name, value in run.model.state_dict().items()}
    run.model.load_state_dict(state)
    try:
        return _loss(run, inputs, labels)
    finally:
        run.model.load_state_dict(current)


def _measure(
    run: Run,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    before: dict[str, torch.Tensor],
    weights_before: dict[str, torch.Tensor],
    update_step: int,
) -> UpdateTrace:
    masking = run.masking
    after_step = _loss(run, inputs, labels)
    grown = {name: masking.mask_dict[name] & ~before[name] for name in before}
    kept = {name: masking.mask_dict[name] & before[name] for name in before}
    weights = {name: run.model.get_parameter(name) for name in before}
    without_grown = dict(run.model.state_dict())
    for name, mask in grown.items():
        without_grown[name] = weights[name].detach().masked_fill(mask, 0.0)
    without = _loss_with(run, without_grown, inputs, labels)
    return UpdateTrace(
        update_step=update_step,
        loss_before_update=_loss_with(run, weights_before, inputs, labels),
        loss_after_step=after_step,
        loss_without_grown=without,
        grown={name: int(mask.sum()) for name, mask in grown.items()},
        dropped={name: int((before[name] & ~masking.mask_dict[name]).sum()) for name in before},
        largest_grown=_largest(weights, grown),
        largest_kept=_largest(weights, kept),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=int, default=0, help="trace the first mask update at or after this step")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `sparselearning train`")
    args = parser.parse_args(argv)
    try:
        check_composes(args.overrides)
        result = trace(args.overrides, args.after)
    except SparseLearningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"mask update at step {result.update_step}")
    print(f"  loss before the update:                         {result.loss_before_update:.4f}")
    print(f"  loss after the next optimizer step:             {result.loss_after_step:.4f}")
    print(f"  the same, with the grown weights set to zero:   {result.loss_without_grown:.4f}")
    for name, count in result.grown.items():
        print(
            f"  {name}: {result.dropped[name]} dropped, {count} grown, largest |w| {result.largest_grown[name]:.3f} "
            f"(kept weights: {result.largest_kept[name]:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
