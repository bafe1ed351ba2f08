"""Write `docs/results.md` from the committed grid results: our numbers beside the published ones.

    .venv/bin/python -m experiments.results_page

It runs `sparselearning report` on each grid's runs (CSV, tables and plots under `results/<grid>/report/`),
copies the accuracy-vs-density plot into `docs/img/`, and writes the comparison with DESIGN.md §7's
published figures, flagging every gap of more than 0.1 percentage point.
"""

from __future__ import annotations

import csv
import shutil
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from sparselearning.report.command import main as report_main

REPO = Path(__file__).resolve().parents[1]
GRIDS = {"mnist_lenet300_100": "MNIST, LeNet-300-100", "fashion_mnist_lenet5": "Fashion-MNIST, LeNet-5-Caffe"}

# Dettmers & Zettlemoyer's released MNIST LeNet-300-100 results (100 epochs), test accuracy in %.
PUBLISHED = {
    ("Dense", None): 98.69,
    ("SNFS", 0.10): 98.67,
    ("SNFS", 0.05): 98.53,
    ("SNFS", 0.02): 98.20,
    ("SNFS", 0.01): 97.53,
    ("SET", 0.05): 98.14,
}
TARGETS = {0.05: 98.55, 0.02: 98.25, 0.01: 97.6}

MNIST_DIFFERENCES = """### Where our recipe differs from the published one (unverified explanations of the gaps)

The dense baseline matches (98.68 against 98.69). Our sparse runs sit 0.05-0.15 points below the published
sparse momentum figures. What differs, none of it yet tested one change at a time:

- Mask updates stop at 75% of training (`masking.end_when` default, as in the RigL paper and the seed project's
  RigL); Dettmers & Zettlemoyer keep annealing the prune rate, and updating, until the end of training.
  `masking.end_when=54000` reproduces theirs.
- We hold out 10% of the 60k training images for validation (the recipe says so) and train on 54k.
- No weight decay on biases (`optimizer.decay_bias_and_norm=false`); their code decays every parameter.
- The published figures are means over their own seeds; ours have standard deviations of 0.01-0.19.
- SET is *above* the published 98.14: ours is the seed project's SET (drop by magnitude and regrow at random
  every 100 steps, the fraction annealed by a cosine until 75% of training), not the original SET schedule
  (a fixed fraction once per epoch) that Dettmers & Zettlemoyer ran."""


def _grid_rows(grid: str) -> list[dict[str, str]]:
    runs = REPO / "results" / grid / "runs"
    out = REPO / "results" / grid / "report"
    if not runs.exists() or report_main([str(runs), "--out", str(out)]) != 0:
        return []
    with (out / "runs.csv").open() as stream:
        return list(csv.DictReader(stream))


def _variant_name(run_dir: str) -> str:
    parts = Path(run_dir).parts
    index = parts.index("runs")
    return parts[index + 1]


def _summaries(rows: list[dict[str, str]]) -> dict[tuple[str, float | None], list[dict[str, str]]]:
    grouped: dict[tuple[str, float | None], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        name = _variant_name(row["run_dir"])
        folder = next((part for part in Path(row["run_dir"]).parts if part.startswith("density_")), None)
        density = None if folder is None else round(float(folder.removeprefix("density_")), 4)
        grouped[(name, density)].append(row)
    return grouped


def _cell(values: list[float]) -> str:
    mean = statistics.mean(values)
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:.2f}{spread} (n={len(values)})"


def _table(grouped) -> list[str]:
    lines = [
        "| method (our run directory name) | density | test accuracy % (mean ± std, n seeds) | published | "
        "difference | training FLOPs (x dense) | inference FLOPs (x dense) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (name, density), rows in sorted(grouped.items(), key=lambda item: (-(item[0][1] or 2.0), item[0][0])):
        accuracies = [100 * float(row["test_accuracy"]) for row in rows]
        published_key = (name.removesuffix("_ERK"), density) if name != "Dense" else ("Dense", None)
        published = PUBLISHED.get(published_key) if name in ("Dense", "SNFS", "SET") else None
        difference = ""
        if published is not None:
            gap = statistics.mean(accuracies) - published
            flag = " **flagged**" if abs(gap) > 0.1 else ""
            difference = f"{gap:+.2f}{flag}"
        train = statistics.mean(float(row["train_flops"]) for row in rows)
        inference = statistics.mean(float(row["inference_flops"]) for row in rows)
        lines.append(
            f"| {name} | {density if density is not None else 1.0} | {_cell(accuracies)} | "
            f"{published if published is not None else '—'} | {difference or '—'} | {train:.4f} | {inference:.4f} |"
        )
    return lines


def _targets(grouped) -> list[str]:
    lines = ["| density | target (RigL or SNFS, mean of 3 seeds) | best of ours | met |", "| ---: | ---: | --- | --- |"]
    for density, target in TARGETS.items():
        candidates = {
            name: [100 * float(r["test_accuracy"]) for r in rows]
            for (name, d), rows in grouped.items()
            if d == density and name.split("_")[0] in ("RigL", "SNFS")
        }
        if not candidates:
            lines.append(f"| {density} | {target} | not run yet | — |")
            continue
        complete = {n: v for n, v in candidates.items() if len(v) >= 3} or candidates
        name, values = max(complete.items(), key=lambda item: statistics.mean(item[1]))
        mean = statistics.mean(values)
        met = (
            "yes"
            if mean >= target and len(values) >= 3
            else ("no" if len(values) >= 3 else "not yet (fewer than 3 seeds)")
        )
        lines.append(f"| {density} | {target} | {name}: {_cell(values)} | {met} |")
    return lines


def main() -> int:
    sections = []
    for grid, title in GRIDS.items():
        rows = _grid_rows(grid)
        if not rows:
            sections.append(f"## {title}\n\nNo finished runs yet (`experiments/grids/{grid}.yaml`).\n")
            continue
        grouped = _summaries(rows)
        figure = REPO / "results" / grid / "report"
        plots = sorted(figure.glob("*accuracy_vs_density.png"))
        image = ""
        if plots:
            target = REPO / "docs" / "img" / f"{grid}_accuracy_vs_density.png"
            shutil.copyfile(plots[0], target)
            image = f"![accuracy against density, {title}](img/{target.name})\n"
        body = "\n".join(_table(grouped))
        extra = (
            "\n\n### Targets\n\n" + "\n".join(_targets(grouped)) + "\n\n" + MNIST_DIFFERENCES
            if grid == "mnist_lenet300_100"
            else ""
        )
        sections.append(
            f"## {title}\n\n{len(rows)} finished runs; full tables, CSV and plots: "
            f"`results/{grid}/report/report.md`.\n\n{image}\n{body}{extra}\n"
        )
    page = (
        "# Results\n\n"
        "Generated by `.venv/bin/python -m experiments.results_page` from the runs committed under `results/`\n"
        "(each run's `summary.json`, `metrics.jsonl`, `config.yaml` and `final_masks.pt`). The grids are\n"
        "`experiments/grids/*.yaml`, run with `.venv/bin/python -m experiments.run_grid GRID --jobs 2`, which skips\n"
        "finished runs. Published numbers: Dettmers & Zettlemoyer's released MNIST LeNet-300-100 results.\n"
        "A difference of more than 0.1 percentage point is flagged.\n\n" + "\n".join(sections)
    )
    (REPO / "docs" / "results.md").write_text(page)
    print(f"wrote {REPO / 'docs' / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
