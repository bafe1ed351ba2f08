"""What one mask update costs: drop + grow (`Masking.update_connections()`) on one Linear layer of 1e4 to 1e7
weights at density 0.1, for each growth mode and for SNFS (momentum growth and redistribution, dense gradients),
against one dense training step of the same layer.

    .venv/bin/python -m benchmarks.update_cost            # full run, well under a minute on 2 cores
    .venv/bin/python -m benchmarks.update_cost --smoke    # seconds; what the test suite runs (1e4, 1e5)

The dense step is forward + backward + SGD (momentum 0.9) of the same layer at batch 128; each update and the
dense step are timed side by side, alternating, and the table gives medians and update / dense step. At the
default update interval of 100 steps, a ratio r costs r / 100 of the training time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from benchmarks.timing import alternating_medians
from sparselearning.core import Masking
from sparselearning.funcs.decay import CosineDecay

# (out_features, in_features) of a layer of each size.
SHAPES = {10_000: (100, 100), 100_000: (250, 400), 1_000_000: (1000, 1000), 10_000_000: (2500, 4000)}
# Growth modes under sparse gradients (no redistribution), and SNFS as it is configured: momentum growth and
# redistribution with dense gradients (under sparse gradients momentum is zero at every inactive position, so
# the "momentum" column ranks ties).
SETTINGS: dict[str, dict[str, object]] = {
    "absolute-gradient": {"growth_mode": "absolute-gradient", "redistribution_mode": "none"},
    "momentum": {"growth_mode": "momentum", "redistribution_mode": "none"},
    "random": {"growth_mode": "random", "redistribution_mode": "none"},
    "SNFS": {"growth_mode": "momentum", "redistribution_mode": "momentum", "dense_gradients": True},
}
GROWTH_MODES = tuple(SETTINGS)
BATCH = 128


def _loss(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return layer(inputs).square().mean()


def _masked_layer(shape: tuple[int, int], growth_mode: str, density: float, inputs: torch.Tensor):
    """A Linear with its Masking after one training step, so gradients and momentum exist for growth."""
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0])
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    masking = Masking(
        optimizer,
        CosineDecay(0.3, T_max=10**9),
        density=density,
        prune_mode="magnitude",
        **SETTINGS[growth_mode],  # type: ignore[arg-type]
    )
    masking.add_module(layer)
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        _loss(layer, inputs).backward()
        masking.step()
    optimizer.zero_grad(set_to_none=True)
    _loss(layer, inputs).backward()
    return layer, masking


def _calls_for(function, target_s: float) -> int:
    function()
    start = time.perf_counter()
    function()
    return max(1, min(200, int(target_s / max(time.perf_counter() - start, 1e-7))))


def measure(size: int, density: float, rounds: int) -> list[dict[str, object]]:
    """One row per growth mode for a layer of `size` weights."""
    shape = SHAPES[size]
    inputs = torch.randn(BATCH, shape[1], generator=torch.Generator().manual_seed(1))
    dense = nn.Linear(shape[1], shape[0])
    dense_optimizer = torch.optim.SGD(dense.parameters(), lr=0.01, momentum=0.9)

    def dense_step() -> None:
        dense_optimizer.zero_grad(set_to_none=True)
        _loss(dense, inputs).backward()
        dense_optimizer.step()

    contenders = {"dense step": dense_step}
    maskings = {}
    for mode in GROWTH_MODES:
        _, masking = _masked_layer(shape, mode, density, inputs)
        maskings[mode] = masking
        contenders[mode] = masking.update_connections
    calls = _calls_for(dense_step, 0.02)
    medians = alternating_medians(contenders, rounds, calls)
    rows = []
    for mode in GROWTH_MODES:
        stats = maskings[mode].stats
        rows.append(
            {
                "weights": shape[0] * shape[1],
                "growth_mode": mode,
                "update_ms": medians[mode] * 1e3,
                "dense_step_ms": medians["dense step"] * 1e3,
                "ratio": medians[mode] / medians["dense step"],
                "density_after": stats.total_nonzero / (stats.total_nonzero + stats.total_zero),
            }
        )
    return rows


def snfs_in_training(size: int, density: float, rounds: int) -> dict[str, float]:
    """An SNFS update as training runs it: right after a dense-gradient step, whose last act is zeroing the
    masked weights (`apply_mask`, untimed here), so the update's stray-weight check has nothing to prove.
    Alternates with the dense step; medians."""
    shape = SHAPES[size]
    inputs = torch.randn(BATCH, shape[1], generator=torch.Generator().manual_seed(1))
    dense = nn.Linear(shape[1], shape[0])
    dense_optimizer = torch.optim.SGD(dense.parameters(), lr=0.01, momentum=0.9)
    _, masking = _masked_layer(shape, "SNFS", density, inputs)
    update, step = [], []
    for _ in range(rounds):
        masking.apply_mask()
        start = time.perf_counter()
        masking.update_connections()
        update.append(time.perf_counter() - start)
        start = time.perf_counter()
        dense_optimizer.zero_grad(set_to_none=True)
        _loss(dense, inputs).backward()
        dense_optimizer.step()
        step.append(time.perf_counter() - start)
    return {
        "weights": float(size),
        "update_ms": statistics.median(update) * 1e3,
        "dense_step_ms": statistics.median(step) * 1e3,
    }


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default; --smoke: 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite (1e4 and 1e5 weights)")
    args = parser.parse_args(argv)
    sizes = list(SHAPES)
    if args.smoke:
        sizes, args.rounds, args.threads = sizes[:2], 2, args.threads or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or previous_threads)
    try:
        threads = torch.get_num_threads()
        rows = [row for size in sizes for row in measure(size, args.density, args.rounds)]
    finally:
        torch.set_num_threads(previous_threads)
    print(
        f"one mask update (drop 30% + regrow) vs one dense fwd+bwd+SGD step of the same Linear at batch {BATCH}; "
        f"density {args.density}, threads {threads}, medians of {args.rounds} alternating rounds"
    )
    header = f"{'weights':>10} {'dense step ms':>14}"
    for mode in GROWTH_MODES:
        header += f" {mode + ' ms':>22} {'/step':>6}"
    print(header)
    for size in sizes:
        group = [row for row in rows if row["weights"] == SHAPES[size][0] * SHAPES[size][1]]
        line = f"{group[0]['weights']:>10.0e} {group[0]['dense_step_ms']:>14.3f}"
        for row in group:
            line += f" {row['update_ms']:>22.3f} {row['ratio']:>6.2f}"
        print(line)
    print("SNFS update right after a dense-gradient step (as in training), over the dense step:")
    for size in sizes:
        row = snfs_in_training(size, args.density, args.rounds)
        ratio = row["update_ms"] / row["dense_step_ms"]
        print(f"{size:>10.0e} {row['dense_step_ms']:>14.3f} {row['update_ms']:>22.3f} {ratio:>6.2f}")
        rows.append({"weights": size, "growth_mode": "SNFS in training", **row, "ratio": ratio})
    return rows


if __name__ == "__main__":
    main()
