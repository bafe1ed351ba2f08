"""Peak memory of masked (RigL) against dense training of the 784-2048-2048-10 MLP, one subprocess per run.

    .venv/bin/python -m benchmarks.memory            # full run, a few minutes
    .venv/bin/python -m benchmarks.memory --smoke    # seconds, a 784-256-256-10 MLP; what the test suite runs
    .venv/bin/python -m benchmarks.memory --step-cost   # what the memory costs in step time, one process

Each contender trains in a fresh Python process (batch 128, SGD momentum 0.9, a few RigL updates) and reports
its peak resident set size (`resource.getrusage(...).ru_maxrss`); tracemalloc cannot see torch's allocations.
Peak RSS is per process, so the contenders of one repeat run concurrently.
The cost of masking is the difference to dense training, divided by the number of masked weights:

- "peak": from the peak RSS difference, so it includes the temporaries of a mask update;
- "held": what the Masking keeps between steps (masks, ever-active record, scratch buffers), summed from the
  tensors themselves;
- "update": held, plus the most bytes of tensors a mask update allocated and kept alive at one moment, counted
  from the profiler's record of every allocation and free (live tensors, not RSS: no allocator or page noise).

The default mode keeps a bool mask (1 byte per weight) and the ever-active record for the ITOP rate (one bit per
weight, packed); `low_memory=True` keeps only the bool masks. No float copy of the masks is kept: the step
multiplies by the bool masks turned into floats one L2-sized chunk at a time (`sparselearning.ops.mask_chunks`).
Scratch buffers exist only while a mask update or a check runs.

`--step-cost` times, in one process and alternating, the dense step, the default masked step and the
`low_memory` masked step of the same MLP at one thread. For the step against an earlier revision (the float masks
it kept), run `python -m benchmarks.against_revision`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CONTENDERS = ("dense", "masked", "masked_low_memory")
WIDTHS = [784, 2048, 2048, 10]
BATCH = 128


def _held_bytes(masking) -> dict[str, int]:
    """Bytes of the tensors a Masking keeps alive between steps, by kind."""
    # The scratch buffers are a Masking internal: this fails loudly (AttributeError) if they are ever renamed,
    # instead of reporting zero bytes.
    groups = {
        "masks": masking.mask_dict,
        "ever_active": {} if masking._ever_active is None else masking._ever_active._bits,  # packed, as held
        "scratch": masking._scratch,
    }
    return {name: sum(t.numel() * t.element_size() for t in group.values()) for name, group in groups.items()}


def live_peak_bytes(run: Callable[[], object]) -> int:
    """The most bytes of tensors allocated by `run()` and alive at one moment, from the profiler's record of every
    CPU allocation and free in time order. An upper bound on what `run` adds to the tensors alive before it: a
    tensor it frees that existed before (an old mask it replaces) is not subtracted."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    changes = sorted(
        (event.time_range.start, event.self_cpu_memory_usage)
        for event in profiler.events()
        if event.self_cpu_memory_usage
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak


def child(
    kind: str, steps: int, update_frequency: int, threads: int, widths: list[int], profile_updates: bool = False
) -> dict[str, object]:
    """Train `steps` steps of one contender in this process and return its peak RSS, or (`profile_updates`, whose
    profiler would inflate the RSS) the live-tensor peak of its mask updates."""
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
    updates, update_peaks = 0, []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        if masking is None:
            optimizer.step()
        elif masking.is_update_step():
            updates += 1
            update_peaks.append(live_peak_bytes(masking.step) if profile_updates else 0)
            if not profile_updates:
                masking.step()
        else:
            masking.step()
    return {
        "kind": kind,
        "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "masked_weights": 0 if masking is None else masking.total_params,
        "held_bytes": {} if masking is None else _held_bytes(masking),
        "update_peak_bytes": max(update_peaks, default=0),
        "updates": updates,
    }


def _start_child(
    kind: str, steps: int, update_frequency: int, threads: int, widths: list[int], profile_updates: bool = False
) -> subprocess.Popen:
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
        *(["--profile-updates"] if profile_updates else []),
    ]
    root = Path(__file__).resolve().parents[1]  # so `-m benchmarks.memory` resolves from any working directory
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)


def _finish_child(process: subprocess.Popen) -> dict[str, object]:
    stdout, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


STEP_CONTENDERS = ("dense", "float masks kept", "bool masks")


@contextlib.contextmanager
def _float_masks_kept(cache: dict[int, Any]) -> Iterator[None]:
    """Inside: `Masking`'s per-step multiply as it was before the float copies were dropped (a float copy of each
    mask, made once and kept, multiplied in one fused call); the reference the bool masks are timed against."""
    import torch

    import sparselearning.core as core
    from sparselearning.masking.sharding import local

    def multiply(tensors, records) -> None:
        for record in records:
            if id(record.mask) not in cache:
                cache[id(record.mask)] = record.mask.float()
        floats = [cache[id(record.mask)] for record in records]
        torch._foreach_mul_([local(tensor) for tensor in tensors], floats)

    current = core.multiply_by_masks
    core.multiply_by_masks = multiply
    try:
        yield
    finally:
        core.multiply_by_masks = current


def step_cost(widths: list[int], rounds: int, calls: int, batch: int = BATCH) -> dict[str, float]:
    """Median ms of the dense step and of the masked step with float masks kept (4 bytes per weight, the previous
    design) and with bool masks only (this one), of one MLP side by side in one process."""
    import copy

    import torch

    from benchmarks.timing import alternating_medians
    from sparselearning import methods
    from sparselearning.models import MLP

    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = MLP(widths)
    inputs = torch.randn(batch, widths[0])
    labels = torch.randint(0, widths[-1], (batch,))
    steps = {}
    for kind in STEP_CONTENDERS:
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        stepper = optimizer.step
        if kind != "dense":
            masking = methods.rigl(
                model, optimizer, density=0.1, total_steps=10**9, update_frequency=10**8, low_memory=True
            )
            kept = kind == "float masks kept"
            context = functools.partial(_float_masks_kept, {}) if kept else contextlib.nullcontext

            def stepper(masking=masking, context=context) -> None:
                with context():
                    masking.step()

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
    parser.add_argument("--profile-updates", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--step-cost", action="store_true", help="time the steps of each contender instead")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds of --step-cost")
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size of --step-cost")
    args = parser.parse_args(argv)
    if args.step_cost:
        if args.smoke:
            args.widths, args.rounds = [784, 256, 256, 10], 2
        ms = step_cost(args.widths, args.rounds, calls=2, batch=args.batch)
        print(
            f"MLP {'-'.join(map(str, args.widths))}, batch {args.batch}, RigL density 0.1, SGD, one thread, medians "
            f"of {args.rounds} alternating rounds"
        )
        for kind in STEP_CONTENDERS:
            print(f"{kind:<18} {ms[kind]:>8.2f} ms  {ms[kind] / ms['dense']:.3f} x dense")
        print(f"bool masks / float masks kept: {ms['bool masks'] / ms['float masks kept']:.3f}")
        return [{"kind": kind, "step_ms": value} for kind, value in ms.items()]
    if args.child:
        result = child(args.child, args.steps, args.update_frequency, args.threads, args.widths, args.profile_updates)
        print(json.dumps(result))
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
    # The live-tensor peaks of updates are deterministic: one profiled run per masked contender.
    profiled = {
        kind: _start_child(kind, args.steps, args.update_frequency, args.threads, args.widths, profile_updates=True)
        for kind in CONTENDERS
        if kind != "dense"
    }
    update_peak = {kind: int(_finish_child(process)["update_peak_bytes"]) for kind, process in profiled.items()}
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
            # Held between steps plus the most any update of the profiled run added.
            "update_bytes_per_weight": (sum(held.values()) + update_peak.get(kind, 0)) / weights,
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
    print("held = masks + ever-active record + scratch (none between steps: only while an update runs)")
    print("update = held + the most bytes of tensors an update allocated and held at once (profiler, live tensors)")
    print(
        f"{'contender':<18} {'peak RSS MB':>12} {'(min-max)':>13} {'extra MB':>9} {'peak B/w':>9} {'held B/w':>9} "
        f"{'update B/w':>10} {'masks':>6} {'ever':>6} {'scratch':>8} {'updates':>8}"
    )
    for row in rows:
        low, high = row["peak_range_mb"]  # type: ignore[misc]
        print(
            f"{row['kind']:<18} {row['peak_rss_mb']:>12.1f} {low:>6.0f}-{high:<6.0f} {row['extra_peak_mb']:>9.1f} "
            f"{row['peak_bytes_per_weight']:>9.2f} {row['held_bytes_per_weight']:>9.2f} "
            f"{row['update_bytes_per_weight']:>10.2f} {row.get('masks_bytes_per_weight', 0.0):>6.2f} "
            f"{row.get('ever_active_bytes_per_weight', 0.0):>6.2f} {row.get('scratch_bytes_per_weight', 0.0):>8.2f} "
            f"{row['updates']:>8}"
        )
    return rows


if __name__ == "__main__":
    main()
