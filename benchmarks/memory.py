"""Peak memory of masked (RigL) against dense training of the 784-2048-2048-10 MLP, one subprocess per run.

    .venv/bin/python -m benchmarks.memory            # full run, a few minutes
    .venv/bin/python -m benchmarks.memory --smoke    # seconds, a 784-256-256-10 MLP; what the test suite runs
    .venv/bin/python -m benchmarks.memory --step-cost   # what the memory costs in step time, one process

Each contender trains in a fresh Python process (batch 128, SGD momentum 0.9, a few RigL updates) and reports
its peak resident set size (`resource.getrusage(...).ru_maxrss`); tracemalloc cannot see torch's allocations.
Peak RSS is per process, so the contenders of one repeat run concurrently.
The cost of masking is the difference to dense training, divided by the number of masked weights:

- "peak": from the peak RSS difference, so it includes the temporaries of a mask update;
- "held": what the Masking keeps between steps (masks, float copies, ever-active masks, scratch buffers),
  summed from the tensors themselves.

The default mode keeps a bool mask (1 byte per weight), a float copy of each mask (4 bytes) to multiply
gradients quickly, and an ever-active mask (1 byte) for the ITOP rate; `low_memory=True` keeps only the bool
masks. Scratch buffers exist only while a mask update or a check runs.

`--step-cost` times, in one process and alternating, the dense step, the default masked step (float masks) and
the `low_memory` masked step (bool masks) of the same MLP at one thread: the step time the float copy buys.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

CONTENDERS = ("dense", "masked", "masked_low_memory")
WIDTHS = [784, 2048, 2048, 10]
BATCH = 128


def _held_bytes(masking) -> dict[str, int]:
    """Bytes of the tensors a Masking keeps alive between steps, by kind."""
    # The scratch buffers are a Masking internal: this fails loudly (AttributeError) if they are ever renamed,
    # instead of reporting zero bytes.
    groups = {
        "masks": masking.mask_dict,
        "float_masks": {r.name: r.float_mask for r in masking.records.values() if r.float_mask is not None},
        "ever_active": {} if masking._ever_active is None else masking._ever_active._bits,  # packed, as held
        "scratch": masking._scratch,
    }
    return {name: sum(t.numel() * t.element_size() for t in group.values()) for name, group in groups.items()}


def child(kind: str, steps: int, update_frequency: int, threads: int, widths: list[int]) -> dict[str, object]:
    """Train `steps` steps of one contender in this process and return its peak RSS."""
    import torch

    from sparselearning import methods
    from sparselearning.models import MLP

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MLP(widths)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    masking = None
    if kind != "dense":
        masking = methods.rigl(
            model,
            optimizer,
            density=0.1,
            total_steps=steps,
            update_frequency=update_frequency,
            end_fraction=1.0,
            low_memory=kind == "masked_low_memory",
        )
    inputs = torch.randn(BATCH, widths[0])
    labels = torch.randint(0, widths[-1], (BATCH,))
    updates = 0
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        if masking is None:
            optimizer.step()
        else:
            updates += masking.is_update_step()
            masking.step()
    return {
        "kind": kind,
        "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "masked_weights": 0 if masking is None else masking.total_params,
        "held_bytes": {} if masking is None else _held_bytes(masking),
        "updates": updates,
    }


def _start_child(kind: str, steps: int, update_frequency: int, threads: int, widths: list[int]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        kind,
        "--steps",
        str(steps),
        "--update-frequency",
        str(update_frequency),
        "--threads",
        str(threads),
        "--widths",
        *map(str, widths),
    ]
    root = Path(__file__).resolve().parents[1]  # so `-m benchmarks.memory` resolves from any working directory
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)


def _finish_child(process: subprocess.Popen) -> dict[str, object]:
    stdout, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def step_cost(widths: list[int], rounds: int, calls: int) -> dict[str, float]:
    """Median ms of the dense, default-masked and low-memory-masked steps of one MLP, side by side."""
    import copy

    import torch

    from benchmarks.timing import alternating_medians
    from sparselearning import methods
    from sparselearning.models import MLP

    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = MLP(widths)
    inputs = torch.randn(BATCH, widths[0])
    labels = torch.randint(0, widths[-1], (BATCH,))
    steps = {}
    for kind in CONTENDERS:
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        stepper = optimizer.step
        if kind != "dense":
            masking = methods.rigl(
                model,
                optimizer,
                density=0.1,
                total_steps=10**9,
                update_frequency=10**8,
                low_memory=kind == "masked_low_memory",
            )
            stepper = masking.step

        def run(model=model, optimizer=optimizer, stepper=stepper) -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(inputs), labels).backward()
            stepper()

        run()
        steps[kind] = run
    medians = alternating_medians(steps, rounds, calls)
    return {kind: value * 1e3 for kind, value in medians.items()}


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--update-frequency", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="subprocesses per contender (median taken)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each child (0: torch default)")
    parser.add_argument("--widths", type=int, nargs="+", default=WIDTHS, help="MLP widths, input to output")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--step-cost", action="store_true", help="time the steps of each contender instead")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds of --step-cost")
    args = parser.parse_args(argv)
    if args.step_cost:
        if args.smoke:
            args.widths, args.rounds = [784, 256, 256, 10], 2
        ms = step_cost(args.widths, args.rounds, calls=2)
        print(
            f"MLP {'-'.join(map(str, args.widths))}, batch {BATCH}, RigL density 0.1, SGD, one thread, medians of "
            f"{args.rounds} alternating rounds"
        )
        for kind in CONTENDERS:
            print(f"{kind:<18} {ms[kind]:>8.2f} ms  {ms[kind] / ms['dense']:.3f} x dense")
        return [{"kind": kind, "step_ms": value} for kind, value in ms.items()]
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.update_frequency, args.threads, args.widths)))
        return []
    if args.smoke:
        args.steps, args.update_frequency, args.repeats = 4, 2, 1
        args.widths, args.threads = [784, 256, 256, 10], args.threads or 1
    samples: dict[str, list[dict[str, object]]] = {kind: [] for kind in CONTENDERS}
    for _ in range(args.repeats):
        # Peak RSS is per process, so the contenders of one repeat may run at the same time.
        running = {
            kind: _start_child(kind, args.steps, args.update_frequency, args.threads, args.widths)
            for kind in CONTENDERS
        }
        for kind, process in running.items():
            samples[kind].append(_finish_child(process))
    peak = {kind: statistics.median(int(s["maxrss_bytes"]) for s in runs) for kind, runs in samples.items()}
    rows = []
    weights = int(samples["masked"][-1]["masked_weights"])
    for kind in CONTENDERS:
        held = samples[kind][-1]["held_bytes"]
        assert isinstance(held, dict)
        extra = peak[kind] - peak["dense"]
        row: dict[str, object] = {
            "kind": kind,
            "peak_rss_mb": peak[kind] / 2**20,
            "peak_range_mb": [
                min(int(s["maxrss_bytes"]) for s in samples[kind]) / 2**20,
                max(int(s["maxrss_bytes"]) for s in samples[kind]) / 2**20,
            ],
            "extra_peak_mb": extra / 2**20,
            "peak_bytes_per_weight": extra / weights,
            "held_bytes_per_weight": sum(held.values()) / weights,
            "masked_weights": weights,
            "updates": int(samples[kind][-1]["updates"]),
        }
        row.update({f"{name}_bytes_per_weight": value / weights for name, value in held.items()})
        rows.append(row)
    print(
        f"MLP {'-'.join(map(str, args.widths))}, batch {BATCH}, {args.steps} steps, RigL density 0.1 updating "
        f"every {args.update_frequency} steps; peak RSS median of {args.repeats} subprocess(es) per contender"
    )
    print(f"masked weights: {weights}; bytes/weight = (peak RSS - dense peak RSS) / masked weights")
    print("held = masks + float masks + ever-active masks + scratch (none between steps: only while an update runs)")
    print(
        f"{'contender':<18} {'peak RSS MB':>12} {'(min-max)':>13} {'extra MB':>9} {'peak B/w':>9} {'held B/w':>9} "
        f"{'masks':>6} {'float':>6} {'ever':>6} {'scratch':>8} {'updates':>8}"
    )
    for row in rows:
        low, high = row["peak_range_mb"]  # type: ignore[misc]
        print(
            f"{row['kind']:<18} {row['peak_rss_mb']:>12.1f} {low:>6.0f}-{high:<6.0f} {row['extra_peak_mb']:>9.1f} "
            f"{row['peak_bytes_per_weight']:>9.2f} {row['held_bytes_per_weight']:>9.2f} "
            f"{row.get('masks_bytes_per_weight', 0.0):>6.2f} {row.get('float_masks_bytes_per_weight', 0.0):>6.2f} "
            f"{row.get('ever_active_bytes_per_weight', 0.0):>6.2f} {row.get('scratch_bytes_per_weight', 0.0):>8.2f} "
            f"{row['updates']:>8}"
        )
    return rows


if __name__ == "__main__":
    main()
