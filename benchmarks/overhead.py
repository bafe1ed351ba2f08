"""What masking costs: (a) a masked training step over the same dense step, (b) one RigL update over 100
dense steps, on LeNet-5, a 784-2048-2048-10 MLP and ViT-tiny at batch 128, measured side by side in one run.

    .venv/bin/python -m benchmarks.overhead            # full run, a few minutes
    .venv/bin/python -m benchmarks.overhead --smoke    # seconds; what the test suite runs

Targets: (a) at most 1.03 (ViT-tiny, with attention: at most 1.05),
(b) at most 1%.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from benchmarks.timing import alternating_medians, time_per_call
from sparselearning import methods
from sparselearning.models import MLP, LeNet5, VisionTransformer


def _contenders(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, density: float, low_memory: bool):
    dense_model = copy.deepcopy(model)
    control_model = copy.deepcopy(model)
    sparse_model = copy.deepcopy(model)
    dense_opt = torch.optim.SGD(dense_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    control_opt = torch.optim.SGD(control_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sparse_opt = torch.optim.SGD(sparse_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    # No automatic updates during (a): updates are timed on their own in (b).
    masking = methods.rigl(
        sparse_model, sparse_opt, density=density, total_steps=10**9, update_frequency=10**8, low_memory=low_memory
    )

    def backward(net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(inputs), labels).backward()

    def dense_step() -> None:
        backward(dense_model, dense_opt)
        dense_opt.step()

    def control_step() -> None:
        backward(control_model, control_opt)
        control_opt.step()

    def masked_step() -> None:
        backward(sparse_model, sparse_opt)
        masking.step()

    return dense_step, control_step, masked_step, masking, lambda: backward(sparse_model, sparse_opt)


def measure(
    name: str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    density: float,
    rounds: int,
    calls: int,
    updates: int,
    low_memory: bool,
) -> dict[str, float]:
    torch.manual_seed(0)
    inputs = torch.randn(128, *input_shape)
    labels = torch.randint(0, 10, (128,))
    dense_step, control_step, masked_step, masking, backward = _contenders(model, inputs, labels, density, low_memory)
    for _ in range(3):
        dense_step()
        control_step()
        masked_step()
    contenders = {"dense": dense_step, "masked": masked_step, "control": control_step}
    medians = alternating_medians(contenders, rounds, calls)

    update_times, dense_between = [], []
    for _ in range(updates):
        backward()
        start = time.perf_counter()
        masking.update_connections()
        update_times.append(time.perf_counter() - start)
        # Dense steps between the updates, so both are measured in the same machine state.
        dense_between.append(time_per_call(dense_step, calls))
    dense_ref = statistics.median(dense_between)
    update = statistics.median(update_times)
    return {
        "model": name,
        "dense_ms": medians["dense"] * 1e3,
        "masked_ms": medians["masked"] * 1e3,
        "step_ratio": medians["masked"] / medians["dense"],
        "control_ratio": medians["control"] / medians["dense"],
        "update_ms": update * 1e3,
        "update_over_100_steps": update / (100 * dense_ref),
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--updates", type=int, default=7)
    parser.add_argument("--low-memory", action="store_true", help="bool masks only (1 byte per weight)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.calls, args.updates = 2, 1, 1
    torch.set_num_threads(torch.get_num_threads())
    cases = [
        ("LeNet-5", LeNet5(), (1, 28, 28)),
        ("MLP 784-2048-2048-10", MLP([784, 2048, 2048, 10]), (784,)),
        ("ViT-tiny", VisionTransformer(), (1, 28, 28)),
    ]
    rows = [measure(n, m, s, args.density, args.rounds, args.calls, args.updates, args.low_memory) for n, m, s in cases]
    print(
        f"batch 128, density {args.density}, SGD momentum 0.9, threads {torch.get_num_threads()}, "
        f"low_memory={args.low_memory}; medians of {args.rounds} alternating rounds"
    )
    print("(a) = masked step / dense step; 'A/A' = a second identical dense model / dense step (the noise floor)")
    print(
        f"{'model':<22} {'dense ms':>9} {'masked ms':>10} {'(a) ratio':>10} {'A/A':>6} {'update ms':>10} "
        f"{'(b) update/100 steps':>21}"
    )
    for row in rows:
        print(
            f"{row['model']:<22} {row['dense_ms']:>9.2f} {row['masked_ms']:>10.2f} {row['step_ratio']:>10.3f} "
            f"{row['control_ratio']:>6.3f} {row['update_ms']:>10.2f} {row['update_over_100_steps']:>20.2%}"
        )
    return rows


if __name__ == "__main__":
    main()
