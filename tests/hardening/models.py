"""Tiny models that `model._target_` can name in the hardening tests (`tests.hardening.models.<Name>`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class NoWeights(nn.Module):
    """Only a BatchNorm1d and an Identity: nothing Masking can mask (no nn.Linear, no nn.Conv*)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.BatchNorm1d(num_classes)
        self.identity = nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.identity(self.norm(inputs.flatten(1)[:, : self.num_classes]))


class NaNAfter(nn.Module):
    """A linear classifier whose outputs become NaN after `good_steps` training forward passes.

    With `good_steps` equal to the steps of one epoch, the first epoch trains normally and the second diverges.
    """

    def __init__(self, num_classes: int = 10, in_features: int = 784, good_steps: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
        self.good_steps = good_steps
        self.training_calls = 0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.fc(inputs.flatten(1))
        if self.training:
            self.training_calls += 1
            if self.training_calls > self.good_steps:
                return outputs * float("nan")
        return outputs


class Probe:
    """Not a model: writes `path` when constructed, so a test can tell whether a config ran it."""

    def __init__(self, path: str, **ignored: object) -> None:
        Path(path).write_text("constructed from a config\n")


class RowTransformer(nn.Module):
    """Reads a 28x28 image as 28 rows: a Linear row embedding plus a learned position table, self-attention, an
    LSTM and a Linear head.

    Its attention and LSTM weights are masked by default; the position table (an `nn.Embedding`) is not, so a run
    of it shows what stays dense.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(28, width)
        self.position = nn.Embedding(28, width)
        self.attention = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.head = nn.Linear(width, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        rows = self.embed(inputs.reshape(inputs.shape[0], 28, 28)) + self.position.weight
        attended, _ = self.attention(rows, rows, rows, need_weights=False)
        states, _ = self.lstm(attended)
        return self.head(states[:, -1])
