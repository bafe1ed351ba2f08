"""A truly sparse training step (`sparse_compute=True`) against the dense and the masked step, side by side.

    .venv/bin/python -m benchmarks.sparse_step            # about 3 minutes
    .venv/bin/python -m benchmarks.sparse_step --smoke    # seconds; what the test suite runs

(a) 4096-4096-4096-10 MLP at batch 256, RigL (SGD momentum 0.9, weight decay 5e-4) with a mask update every
`--interval` steps, one thread: the dense step, the masked step and the sparse-compute step, alternating, medians
of the steps without an update; update steps are timed apart and amortised over RigL's usual 100 steps.
Targets: sparse step at least 3x faster than the dense one at 99% sparsity, at least 1.5x at 95%.
(b) Equality: masked and sparse-compute training from the same start, through steps that include mask updates;
the largest weight difference (target 1e-4) and whether every mask is equal.
(c) Where it does not pay: one Linear layer's forward and backward, sparse over dense, across densities, batch
sizes and layer widths (below 1.0 sparse is faster; `sparse_compute="auto"` makes this choice per layer).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from sparselearning import methods
from sparselearning.masking.sparse_compute import Pattern, time_layer
from sparselearning.models import MLP


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def _stepper(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, step: Callable[[], object]):
    def run() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(inputs), labels).backward()
        step()

    return run


def step_times(widths: list[int], batch: int, density: float, rounds: int, interval: int) -> dict[str, float]:
    """Medians (ms) of the dense, masked and sparse-compute steps, and of their update steps."""
    torch.manual_seed(0)
    base = MLP(widths)
    inputs = torch.randn(batch, widths[0])
    labels = torch.randint(0, widths[-1], (batch,))
    models = {name: copy.deepcopy(base) for name in ("dense", "masked", "sparse")}
    optimizers = {name: _optimizer(model) for name, model in models.items()}
    maskings = {
        name: methods.rigl(
            models[name],
            optimizers[name],
            density=density,
            total_steps=10**9,
            update_frequency=interval,
            end_fraction=1.0,
            sparse_compute=(name == "sparse"),
        )
        for name in ("masked", "sparse")
    }
    steps = {
        "dense": _stepper(models["dense"], inputs, labels, optimizers["dense"].step),
        "masked": _stepper(models["masked"], inputs, labels, maskings["masked"].step),
        "sparse": _stepper(models["sparse"], inputs, labels, maskings["sparse"].step),
    }
    plain: dict[str, list[float]] = {name: [] for name in steps}
    update: dict[str, list[float]] = {name: [] for name in steps}
    for name in steps:  # warm-up: one plain step each
        steps[name]()
    for round_index in range(rounds):
        order = list(steps) if round_index % 2 == 0 else list(reversed(steps))
        for name in order:
            is_update = name in maskings and maskings[name].is_update_step()
            start = time.perf_counter()
            steps[name]()
            (update if is_update else plain)[name].append(time.perf_counter() - start)
    result = {f"{name}_ms": statistics.median(plain[name]) * 1e3 for name in steps}
    for name in ("masked", "sparse"):
        result[f"{name}_update_ms"] = statistics.median(update[name]) * 1e3 if update[name] else float("nan")
    return result


def equality(
    widths: list[int], batch: int, density: float, steps: int, interval: int, optimizer: str
) -> tuple[float, int, float, float]:
    """Train masked and sparse-compute copies `steps` steps from one start (mask updates every `interval`):
    (largest weight difference, mask positions that differ, largest optimizer-state difference, largest weight
    difference where both masks agree)."""
    torch.manual_seed(1)
    base = MLP(widths)
    runs = []
    for sparse in (False, True):
        model = copy.deepcopy(base)
        if optimizer == "AdamW":
            opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        else:
            opt = _optimizer(model)
        masking = methods.rigl(
            model,
            opt,
            density=density,
            total_steps=10**6,
            update_frequency=interval,
            end_fraction=1.0,
            sparse_compute=sparse,
        )
        generator = torch.Generator().manual_seed(2)
        for _ in range(steps):
            inputs = torch.randn(batch, widths[0], generator=generator)
            labels = torch.randint(0, widths[-1], (batch,), generator=generator)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(inputs), labels).backward()
            masking.step()
        runs.append((model, masking, opt))
    (m0, k0, o0), (m1, k1, o1) = runs
    weights = max((a - b).abs().max().item() for a, b in zip(m0.parameters(), m1.parameters(), strict=True))
    masks = sum(int((k0.masks[name] != k1.masks[name]).sum()) for name in k0.masks)
    agreeing = max(
        ((k0.params[name] - k1.params[name]) * (k0.masks[name] == k1.masks[name])).abs().max().item()
        for name in k0.masks
    )
    state = 0.0
    for p0, p1 in zip(m0.parameters(), m1.parameters(), strict=True):
        for key, value in o0.state[p0].items():
            if isinstance(value, torch.Tensor) and value.shape == p0.shape:
                state = max(state, (value - o1.state[p1][key]).abs().max().item())
    return weights, masks, state, agreeing


def layer_ratio(width: int, batch: int, density: float) -> float:
    """Sparse over dense time of one width x width Linear layer's forward and backward."""
    torch.manual_seed(0)
    weight = torch.randn(width, width)
    mask = torch.rand(width, width) < density
    sparse_ms, dense_ms = time_layer(torch.randn(batch, width), weight * mask, Pattern.from_mask(mask), repeats=3)
    return sparse_ms / dense_ms


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--interval", type=int, default=4, help="steps between mask updates in (a)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    widths, batch = [4096, 4096, 4096, 10], 256
    sweep_widths, sweep_batches, sweep_densities = [1024, 4096], [32, 256, 1024], [0.01, 0.05, 0.1, 0.2]
    equal_widths, equal_steps = [4096, 4096, 4096, 10], 6
    if args.smoke:
        widths, batch, args.rounds = [256, 256, 256, 10], 32, 3
        sweep_widths, sweep_batches, sweep_densities = [256], [32], [0.05]
        equal_widths, equal_steps = [64, 128, 128, 10], 6
    print(
        f"(a) MLP {'-'.join(map(str, widths))}, batch {batch}, RigL update every {args.interval} steps, SGD, 1 thread"
    )
    print(
        f"{'density':>8} {'dense ms':>9} {'masked ms':>10} {'sparse ms':>10} {'dense/sparse':>13} "
        f"{'masked/sparse':>14} {'upd masked':>11} {'upd sparse':>11} {'dense/sparse @100':>18}"
    )
    rows = {}
    for density in (0.01, 0.05):
        row = step_times(widths, batch, density, args.rounds, args.interval)
        amortised = (99 * row["sparse_ms"] + row["sparse_update_ms"]) / 100
        row["speedup"] = row["dense_ms"] / row["sparse_ms"]
        row["speedup_amortised"] = row["dense_ms"] / amortised
        rows[density] = row
        print(
            f"{density:>8} {row['dense_ms']:>9.1f} {row['masked_ms']:>10.1f} {row['sparse_ms']:>10.1f} "
            f"{row['speedup']:>13.2f} {row['masked_ms'] / row['sparse_ms']:>14.2f} {row['masked_update_ms']:>11.1f} "
            f"{row['sparse_update_ms']:>11.1f} {row['speedup_amortised']:>18.2f}"
        )
    print("targets: dense/sparse >= 3 at density 0.01, >= 1.5 at density 0.05")
    print(f"(b) masked vs sparse compute, MLP {'-'.join(map(str, equal_widths))}, {equal_steps} steps, update every 2")
    equal = {}
    for name in ("SGD", "AdamW"):
        weights, masks, state, agreeing = equality(equal_widths, 64, 0.05, equal_steps, 2, name)
        equal[name] = (weights, masks, state, agreeing)
        print(
            f"  {name:<6} max |weight diff| {weights:.2e}  mask positions differing {masks}  "
            f"max |state diff| {state:.2e}  max |weight diff| where masks agree {agreeing:.2e}"
        )
    print("(c) one Linear layer, forward + backward, sparse/dense time (< 1: sparse pays)")
    print(f"{'width':>6} {'batch':>6} " + " ".join(f"{'d=' + str(d):>7}" for d in sweep_densities))
    sweep = {}
    for width in sweep_widths:
        for size in sweep_batches:
            ratios = [layer_ratio(width, size, d) for d in sweep_densities]
            sweep[(width, size)] = ratios
            print(f"{width:>6} {size:>6} " + " ".join(f"{r:>7.2f}" for r in ratios))
    return {"steps": rows, "equality": equal, "sweep": sweep}


if __name__ == "__main__":
    main()
