"""The README's run command: RigL at 95% sparsity (ERK) trains LeNet-300-100 on real MNIST through the Python API.

    .venv/bin/python -m sparselearning.quickstart [--epochs N]

It shows the three lines a training loop needs (build the method, `masking.step()` instead of
`optimizer.step()`) and ends with a short table of results.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from sparselearning import methods
from sparselearning.data.mnist import load_mnist
from sparselearning.models import LeNet300100

MEAN, STD = 0.1307, 0.3081


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - MEAN) / STD


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        int((model(_normalise(images[i : i + 1000])).argmax(1) == labels[i : i + 1000]).sum())
        for i in range(0, len(labels), 1000)
    )
    model.train()
    return correct / len(labels)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = load_mnist()
    model = LeNet300100()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = len(data["train_labels"]) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    masking = methods.rigl(
        model,
        optimizer,
        density=args.density,
        total_steps=total_steps,
        sparse_init="erdos-renyi-kernel",
        seed=args.seed,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    order = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        permutation = torch.randperm(len(data["train_labels"]), generator=order)
        for step in range(steps_per_epoch):
            batch = permutation[step * args.batch_size : (step + 1) * args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(
                model(_normalise(data["train_images"][batch])), data["train_labels"][batch]
            )
            loss.backward()
            masking.step()
            scheduler.step()
        val = accuracy(model, data["val_images"], data["val_labels"])
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}, validation accuracy {val:.4f}, "
            f"density {masking.stats.total_density:.4f}"
        )
    results = {
        "test_accuracy": accuracy(model, data["test_images"], data["test_labels"]),
        "density": masking.stats.total_density,
        "wall_time_s": time.perf_counter() - start,
    }
    print("\nRigL (ERK), LeNet-300-100, MNIST")
    print(f"{'test accuracy':<16}{results['test_accuracy']:.4f}")
    print(f"{'density':<16}{results['density']:.4f} ({masking.stats.total_nonzero} of {masking.total_params} weights)")
    print(f"{'training time':<16}{results['wall_time_s']:.1f} s")
    return results


if __name__ == "__main__":
    main()
