"""Small models of each family and helpers that train a few deterministic steps."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

from sparselearning.core import Masking


class SmallConvNet(nn.Module):
    """Conv (with BatchNorm) then Linear: exercises conv, norm and linear layers in 1x12x12 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.conv1(inputs)))
        hidden = torch.relu(self.conv2(hidden))
        return self.fc(hidden.flatten(1))


class SmallResidual(nn.Module):
    """A residual block with a shared-weight projection: skip connections and parameter sharing."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        )
        self.head = nn.Linear(4, 10)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.stem(inputs))
        hidden = torch.relu(hidden + self.block(hidden))
        return self.head(hidden.mean(dim=(2, 3)))


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(144, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


MODEL_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "mlp": small_mlp,
    "conv": SmallConvNet,
    "residual": SmallResidual,
}


def batch(seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, 12, 12, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def backward(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int = 0) -> None:
    inputs, labels = batch(seed)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(inputs), labels).backward()


def train(model: nn.Module, optimizer: torch.optim.Optimizer, masking: Masking, steps: int, seed: int = 0) -> None:
    """`steps` iterations of backward + masking.step(), each on its own deterministic batch."""
    for step in range(steps):
        backward(model, optimizer, seed * 100_003 + step)
        masking.step()


def inactive_values_are_zero(masking: Masking) -> bool:
    return all(bool((masking.params[n].detach()[~m] == 0).all()) for n, m in masking.mask_dict.items())


def active_counts(masking: Masking) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in masking.mask_dict.items()}


def masking_for(model: nn.Module, **options: object) -> tuple[Masking, torch.optim.Optimizer]:
    """A Masking over `model` with an SGD(momentum) optimizer; options go to the Masking constructor."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = Masking(optimizer, **options)  # type: ignore[arg-type]
    masking.add_module(model)
    return masking, optimizer


def linear_with(weight: torch.Tensor) -> nn.Module:
    """A single bias-free Linear layer holding exactly `weight` (out, in)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(layer)


def torchrun_command(processes: int, module: str, *arguments: str) -> list[str]:
    """The command line that runs `python -m module arguments...` in `processes` local ranks under torchrun."""
    return [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"),
        *("-m", module, *arguments),
    ]
