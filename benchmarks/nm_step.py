"""What N:M training by SR-STE costs per step, against a dense step of the same model, timed side by side.

Each contender is one whole training step (forward, backward, step) of its own copy of the model on the same
batch: dense (`optimizer.step()`), and `methods.nm` at 2:4 and 1:4 (the refined gradient term, the dense weights
into the parameters, the optimizer step, new masks from |W|, `W * mask` back). A second table times the mask
rule alone on the largest layer: the rank-by-comparison rule `funcs.n_m.nm_mask` uses against a stable sort of
every group (what it replaced). One thread, medians of alternating rounds.

    .venv/bin/python -m benchmarks.nm_step              # LeNet-300-100 (batch 100) and 784-2048-2048-10 (batch 128)
    .venv/bin/python -m benchmarks.nm_step --smoke      # seconds
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.timing import alternating_medians
from sparselearning import methods
from sparselearning.funcs.n_m import nm_mask


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def step_contenders(widths: list[int], batch: int) -> dict[str, Callable[[], object]]:
    """Name -> one training step of that contender's own model on a fixed batch."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, widths[0], generator=generator)
    labels = torch.randint(0, widths[-1], (batch,), generator=generator)
    contenders: dict[str, Callable[[], object]] = {}
    for name, pattern in (("dense", None), ("NM 2:4", (2, 4)), ("NM 1:4", (1, 4))):
        torch.manual_seed(0)
        model = _mlp(widths)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        stepper = optimizer.step if pattern is None else methods.nm(model, optimizer, *pattern).step

        def run(model=model, optimizer=optimizer, stepper=stepper) -> None:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(inputs), labels).backward()
            stepper()

        contenders[name] = run
    return contenders


def _sorted_groups_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    groups = weight.abs().reshape(-1, m)
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[:, :n]
    return torch.zeros(groups.shape, dtype=torch.bool).scatter_(-1, order, True).reshape(weight.shape)


def mask_contenders(weight: torch.Tensor, n: int, m: int) -> dict[str, Callable[[], object]]:
    """Name -> the N:M mask of `weight` by that rule (both give the same mask)."""
    return {"rank (nm_mask)": lambda: nm_mask(weight, n, m), "stable sort": lambda: _sorted_groups_mask(weight, n, m)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    shapes = [("LeNet-300-100", [784, 300, 100, 10], 100), ("784-2048-2048-10", [784, 2048, 2048, 10], 128)]
    calls = 5
    if args.smoke:
        shapes, args.rounds, calls = [("tiny", [64, 32, 8], 16)], 2, 1
    torch.set_num_threads(1)
    results: dict[str, dict[str, float]] = {}
    print(f"one thread, medians of {args.rounds} alternating rounds of {calls} steps")
    print(f"{'model':<18} {'contender':<16} {'ms/step':>8} {'vs dense':>9}")
    for label, widths, batch in shapes:
        medians = alternating_medians(step_contenders(widths, batch), args.rounds, calls)
        results[label] = {name: seconds / medians["dense"] for name, seconds in medians.items()}
        for name, seconds in medians.items():
            print(f"{label:<18} {name:<16} {seconds * 1e3:>8.3f} {results[label][name]:>8.2f}x")
    widest = max(itertools.pairwise(shapes[-1][1]), key=lambda pair: pair[0] * pair[1])
    weight = torch.randn(widest[1], widest[0], generator=torch.Generator().manual_seed(1))
    print(f"\nthe 2:4 mask of one {widest[1]} x {widest[0]} weight")
    rules = alternating_medians(mask_contenders(weight, 2, 4), args.rounds, calls)
    results["mask"] = {name: seconds / rules["stable sort"] for name, seconds in rules.items()}
    for name, seconds in rules.items():
        print(f"{name:<18} {seconds * 1e3:>8.3f} ms {results['mask'][name]:>6.2f}x of the sort")
    return results


if __name__ == "__main__":
    main()
