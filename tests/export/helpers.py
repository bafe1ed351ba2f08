"""Small models of each family with random masks, and the masked reference they must reproduce."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from sparselearning.core import Masking
from sparselearning.models import MLP, LeNet5, LeNet300100, WideResNet

# name -> (factory, input shape, spec that rebuilds it)
FAMILIES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], dict]] = {
    "lenet300-100": (LeNet300100, (1, 28, 28), {"name": "lenet300-100", "kwargs": {}}),
    "lenet5": (LeNet5, (1, 28, 28), {"name": "lenet5", "kwargs": {}}),
    "wrn-10-1": (
        lambda: WideResNet(depth=10, widen_factor=1),
        (3, 32, 32),
        {"name": "wrn-22-2", "kwargs": {"depth": 10, "widen_factor": 1}},
    ),
    "mlp": (lambda: MLP([48, 32, 16, 10]), (48,), {"name": "MLP", "kwargs": {"widths": [48, 32, 16, 10]}}),
}


def random_masks(model: nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random mask of about `density` for the weight of every Linear and Conv2d."""
    generator = torch.Generator().manual_seed(seed)
    return {
        f"{name}.weight": torch.rand(module.weight.shape, generator=generator) < density
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
    }


def with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics and affine parameters, so eval mode uses them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
    return model


def masked_reference(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """The model with its masks multiplied in, in eval mode: what an export must compute."""
    reference = copy.deepcopy(model).eval()
    parameters = dict(reference.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    return reference


def max_difference(first: nn.Module, second: nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return float((first(inputs) - second(inputs)).abs().max())


class TiedSequenceModel(nn.Module):
    """Tokens -> embedding -> TransformerEncoder -> LSTM -> output Linear tied to the embedding table."""

    def __init__(self, vocab: int = 50, width: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.head = nn.Linear(width, vocab)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.encoder(self.embed(tokens)))
        return self.head(hidden)


class RecurrentModel(nn.Module):
    """A two-layer bidirectional GRU and a one-layer RNN, then a Linear classifier on the last step."""

    def __init__(self, features: int = 12, width: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.gru = nn.GRU(features, width, num_layers=2, batch_first=True, bidirectional=True)
        self.rnn = nn.RNN(2 * width, width, batch_first=True)
        self.fc = nn.Linear(width, classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.gru(inputs)[0])
        return self.fc(hidden[:, -1])


def masking_for(model: nn.Module, density: float = 0.1, **options: object) -> Masking:
    """A static `Masking` of `model` (random masks, the same density in every masked weight)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = Masking(optimizer, None, density=density, sparse_init="random", seed=0)
    masking.add_module(model, **options)  # type: ignore[arg-type]
    return masking
