"""What the Lightning tests share: LeNet-300-100 in a LightningModule, a fixed batch order, and a Trainer that
writes nothing it is not asked to (also imported by the torchrun worker, so it lives outside the test file)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparselearning.models import registry

LEARNING_RATE = 0.05


def lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return registry["lenet300-100"]()


def batches(count: int, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 28, 28, generator=generator), torch.randint(0, 10, (size,), generator=generator))
        for _ in range(count)
    ]


def loader(data: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> DataLoader:
    inputs = torch.cat([x for x, _ in data])
    labels = torch.cat([y for _, y in data])
    return DataLoader(TensorDataset(inputs, labels), batch_size=len(data[0][1]), shuffle=False)


def optimizer_for(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)


class Classifier(pl.LightningModule):
    """A model trained with cross-entropy and the test's SGD."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        return nn.functional.cross_entropy(self(inputs), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return optimizer_for(self)


def trainer(callbacks: list[pl.Callback], root: str, **settings: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=settings.pop("devices", 1),
        callbacks=callbacks,
        default_root_dir=root,
        logger=settings.pop("logger", False),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **settings,
    )
