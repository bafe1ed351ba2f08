"""This tree's masking overhead beside an earlier revision's, measured alternately on the same machine.

Runs `benchmarks.overhead` from this working tree and from a git revision checked out into a temporary worktree,
in turns, each in its own process, and prints for each model the median masked-step / dense-step ratio and the
median update cost of each side. Each process normalises by its own dense step, so the two sides compare ratios,
not wall times taken at different moments.

    .venv/bin/python -m benchmarks.against_revision --revision 397b18e --repeats 5

Needs a git checkout (the revision must exist in it); it creates and removes the worktree itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "OVERHEAD_ROWS "


def run_overhead(tree: Path, rounds: int) -> list[dict[str, float]]:
    """The rows of `benchmarks.overhead` run from `tree`, in a fresh single-threaded process."""
    code = (
        "import json, sys; from benchmarks import overhead; "
        f"rows = overhead.main(['--rounds', '{rounds}']); print({MARK!r} + json.dumps(rows))"
    )
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith(MARK))
    return json.loads(line[len(MARK) :])


# The masking side of a step alone (gradient and weight masking on a 784-2048-2048-10 MLP at density 0.1,
# gradients present), timed in the tree's own process with only the public API both revisions have.
HOT_PATH = """
import json, time, statistics, torch
from torch import nn
from sparselearning import methods
from sparselearning.models import MLP
torch.manual_seed(0)
model = MLP([784, 2048, 2048, 10])
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
masking = methods.rigl(model, optimizer, density=0.1, total_steps=10**9, update_frequency=10**8)
nn.functional.cross_entropy(model(torch.randn(128, 784)), torch.randint(0, 10, (128,))).backward()
times = []
for _ in range(200):
    start = time.perf_counter()
    masking.mask_gradients()
    masking.apply_mask()
    times.append(time.perf_counter() - start)
print(MARK + json.dumps({"hot_ms": statistics.median(times) * 1e3}))
"""


def run_hot_path(tree: Path) -> float:
    """Median ms of the masking side of one step, run from `tree` in a fresh single-threaded process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    code = f"MARK = {MARK!r}\n{HOT_PATH}"
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith(MARK))
    return float(json.loads(line[len(MARK) :])["hot_ms"])


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revision", required=True, help="the git revision to compare against")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side, alternating")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds inside each run")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, list[float]]] = {}
    hot: dict[str, list[float]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.revision], cwd=ROOT, check=True)
        try:
            for _ in range(args.repeats):
                for side, tree in (("base", base), ("this", ROOT)):
                    hot[side].append(run_hot_path(tree))
                    for row in run_overhead(tree, args.rounds):
                        cell = results.setdefault(f"{row['model']}|{side}", {"step": [], "update": []})
                        cell["step"].append(row["step_ratio"])
                        cell["update"].append(row["update_over_100_steps"])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)
    print(f"masked step / dense step and one update / 100 dense steps: medians of {args.repeats} runs per side")
    print(f"{'model':<22} {'side':<26} {'(a) step ratio':>15} {'(b) update':>11}")
    summary = {}
    for key, cell in results.items():
        model, side = key.split("|")
        step, update = statistics.median(cell["step"]), statistics.median(cell["update"])
        summary[key] = {"step_ratio": step, "update_over_100_steps": update}
        label = f"{args.revision}" if side == "base" else "this tree"
        print(f"{model:<22} {label:<26} {step:>15.3f} {update:>10.2%}")
    print("masking side of one step alone (mask_gradients + apply_mask), MLP 784-2048-2048-10, median ms:")
    for side, label in (("base", args.revision), ("this", "this tree")):
        summary[f"hot|{side}"] = {"hot_ms": statistics.median(hot[side])}
        print(f"  {label:<26} {statistics.median(hot[side]):.3f} ms")
    return summary


if __name__ == "__main__":
    main()
