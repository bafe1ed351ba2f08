"""Write `docs/results.md` from the committed grid results: our numbers beside the published ones.

    .venv/bin/python -m experiments.results_page

It runs `sparselearning report` on each grid's runs (CSV, tables and plots under `results/<grid>/report/`),
copies the accuracy-vs-density plot into `docs/img/`, and writes the comparison with the published figures
(Dettmers & Zettlemoyer's released MNIST results), flagging every gap of more than 0.1 percentage point, and
with what the original sparse momentum code reaches when run here.

Where the page picks one variant of a method to stand for it (the headline table, the targets), it picks by
validation accuracy, never by test accuracy: `choose_by_validation`.
"""

from __future__ import annotations

import csv
import os
import shutil
import statistics
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from sparselearning.report.command import main as report_main

REPO = Path(__file__).resolve().parents[1]
GRIDS = {
    "mnist_lenet300_100": "MNIST, LeNet-300-100",
    "mnist_ablations": "MNIST, LeNet-300-100: ablations at 5% density",
    "mnist_two_percent": "MNIST, LeNet-300-100: two variants aimed at the 2% target",
    "mnist_rigl_interval": "MNIST, LeNet-300-100: RigL's update interval at 2% density",
    "mnist_more_seeds": "MNIST, LeNet-300-100: three more seeds at 2% density",
    "fashion_mnist_lenet5": "Fashion-MNIST, LeNet-5-Caffe",
    "fashion_mnist_lr": "Fashion-MNIST, LeNet-5-Caffe: dynamic methods at 2% density and lr 0.05",
    "fashion_mnist_vit": "Fashion-MNIST, ViT-tiny",
    "mnist_srigl": "MNIST, LeNet-300-100: SRigL (constant fan-in) beside RigL",
    "mnist_nm": "MNIST, LeNet-300-100: N:M sparsity (SR-STE) beside dense",
    "fashion_mnist_srigl": "Fashion-MNIST, LeNet-5-Caffe: SRigL (constant fan-in) beside RigL",
}
# The main-grid variants each ablation grid changes, shown beside it as the baseline.
ABLATION_BASELINES = {
    "mnist_ablations": ("mnist_lenet300_100", 0.05, ("SNFS", "RigL_ERK", "RigL_ERK_per_epoch")),
    "mnist_two_percent": ("mnist_lenet300_100", 0.02, ("SNFS_ERK", "RigL_ERK_per_epoch")),
    "mnist_rigl_interval": ("mnist_lenet300_100", 0.02, ("RigL_ERK", "RigL_ERK_per_epoch")),
    "fashion_mnist_lr": (
        "fashion_mnist_lenet5",
        0.02,
        ("RigL", "RigL_ERK", "SNFS", "SNFS_ERK", "Static_ERK", "SET_ERK"),
    ),
}
# Structured grids and what each is compared with: (baseline grid, its variant, the densities compared, None
# meaning the run names none, and the grid's own variants). The tolerance is issue 20's, in points of 3-seed
# mean test accuracy.
STRUCTURED_BASELINES = {
    "mnist_srigl": ("mnist_lenet300_100", "RigL_ERK", (0.1, 0.05, 0.02), ("SRigL",)),
    "fashion_mnist_srigl": ("fashion_mnist_lenet5", "RigL_ERK", (0.1, 0.05), ("SRigL",)),
    "mnist_nm": ("mnist_lenet300_100", "Dense", (None,), ("NM_2_4", "NM_1_4")),
}
STRUCTURED_TOLERANCE = 0.3
# Grids that rerun earlier grids' variants on new seeds: shown beside the pooled runs of every seed.
POOLED_GRIDS = ("mnist_more_seeds",)

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

# Dettmers & Zettlemoyer's own sparse momentum code (their `sparse_learning` repository at commit e19ff16), run
# with its own defaults on our MNIST copy, on this project's kind of machine, one thread per run: test accuracy %
# of the final model (after epoch 100), seeds 0, 1, 2, ... in order.
REFERENCE_CODE_RUNS = {
    0.02: (97.79, 97.93, 98.20, 98.09, 97.87),
    0.05: (98.42, 98.23, 98.50),
}

# The grids whose variants may stand for a method in the headline: LeNet-300-100 on MNIST with one recipe (the
# ablation grids repeat the main grid's, a test checks it), seeds 0-2. `mnist_more_seeds` reruns some of these
# variants on seeds 3-5 and is left out, so every candidate is judged on the same seeds.
HEADLINE_GRIDS = ("mnist_lenet300_100", "mnist_ablations", "mnist_two_percent", "mnist_rigl_interval")
HEADLINE_FAMILIES = ("RigL", "SNFS", "Pruning")
HEADLINE_DENSITIES = (0.05, 0.02, 0.01)

MNIST_DIFFERENCES = """### Where our numbers differ from the published ones

The dense baseline matches (98.68 against 98.69). With the seed project's schedules, our SNFS sits 0.05-0.15
points below Dettmers & Zettlemoyer's sparse momentum figures. The ablations below (`experiments/grids/
mnist_ablations.yaml`, 3 seeds at 5%) tested the differences between our SNFS and their code one group at a
time; none moves the mean by more than its noise (0.03-0.05 standard error of a 3-seed mean):

- decaying every parameter, biases included, and updating the masks after every epoch until the end of training
  (we stop at 75%): SNFS_to_end;
- letting a regrown weight keep the momentum it gathered while inactive (`masking.keep_grown_momentum=true`,
  as their code does): SNFS_dettmers.

RigL on SNFS's schedule (RigL_ERK_per_epoch: one update per epoch, drop fraction 0.5, until the end, ERK initial
layer densities, gradient growth, no redistribution) has the best validation accuracy of the RigL variants at 10,
2 and 1%, at a seventh of SNFS's training FLOPs (about 0.05x dense against 0.35-0.37x), and meets the 1% target
(97.71). At 2% it has the best validation accuracy of every RigL and SNFS variant (98.49) and 98.11 on test, short
of 98.25; no RigL or SNFS variant reaches the 2% target on test either (best 98.18, SNFS_ERK_dettmers), and on six
seeds the best 2% means are about 98.15 (section "three more seeds"). At 5% it is third of the RigL variants on
validation (98.65, behind RigL_ERK_to_end's 98.71 and RigL_ERK's 98.69) while it has their best test accuracy
(98.55). This page and the README once picked it by that test figure, after seeing test accuracy at 5% among the
four schedules of the ablation grid, and called the 5% target met; chosen by validation, the 5% target row is
SNFS_ERK (validation 98.72, test 98.43), and the 5% target is not met.
What does beat the published figures at every density is gradual magnitude pruning (98.61, 98.45 and 98.06 at 5, 2
and 1%), which starts dense and so finds a better layer allocation (it keeps 42-53% of the output layer, SNFS
grows it to 80-100%); its lottery-ticket restart, static on that allocation, matches or beats them too (98.52,
98.25 and 97.65).

Static with uniform layer densities collapses at 2% (69 ± 18): the 100x10 output layer keeps 20 of its 1000
weights, so in our seeds one class has no incoming connection at all (seeds 0 and 1) or several have one
(seed 2). ERK, which gives the output layer 37% of its weights, reaches 96.2 under the same budget. The same
budget problem caps uniform RigL and SET at 1% (81-82%: the output layer keeps 10 weights for 10 classes) and
sinks uniform Static there to 29% (Static_ERK: 91.6).

At 10% every dynamic method is within 0.05 of the published SNFS 98.67 (SNFS 98.65, SNFS_ERK 98.67, RigL_ERK
98.65) and of our dense 98.68; only Static (97.81, ERK 98.09) and Small_Dense (98.46) fall behind.

Small_Dense is not a same-budget comparison on this network. It follows the usual Small-Dense rule (every hidden width
times sqrt(density)), which leaves the 784 inputs as they are, so at the 1, 2, 5 and 10% of its row it holds
9.0, 12.6, 20.4 and 29.2% of LeNet-300-100's weights (its FLOPs columns show it). It still trails every dynamic
method with ERK layer densities at every density.

Other differences, untested: the published figures are means over their own seeds. The validation split is
theirs: like their code, we hold out the last 10% of the 60k training images in file order (our copy keeps the
original order: its first training labels are the IDX file's 5, 0, 4, 1, 9, ...). SET is *above* the published
98.14: ours is the seed project's SET (drop by magnitude and regrow at random every 100 steps, the fraction
annealed by a cosine until 75% of training), not the original SET schedule (a fixed fraction once per epoch)
that Dettmers & Zettlemoyer ran."""

FASHION_NOTES = """10 epochs of the MNIST recipe (SGD, Nesterov momentum 0.9, lr 0.1, weight decay 5e-4,
batch 100, the last 10% of the training images held out for validation), with the learning rate x0.1 once, at
52% of training (`experiments/grids/fashion_mnist_lenet5.yaml` says why). 10 epochs is what this 2-core machine
affords (about 2.5 minutes a run, two at a time). Nothing published uses this recipe, so the methods are compared
with each other and with the dense baseline (Dettmers & Zettlemoyer's LeNet-5-Caffe figures are on MNIST).

SNFS_ERK at 5% diverged in one of its three seeds (seed 1: 52.7%, the others 89.9 and 90.5): momentum
redistribution moved much of the first fully connected layer's budget into conv2 at the first update (conv2 from
3.7% to 27% dense, 34% by the end), regrowing those weights at zero while dropping half of fc3's; the loss spiked
after that update and, at lr 0.1, went from 0.5 to 8 after the second, the network to chance; it partly
recovered after the learning-rate drop. SNFS from uniform layer densities did not diverge at 5%.

**Why dynamic methods collapse at 2%.** At 2% density and lr 0.1, one seed in three of RigL_ERK (at chance from
the first epoch), SNFS_ERK and SNFS ended at chance (10.0%), one RigL seed collapsed to chance in epoch 3 and had
recovered to 60.7% by the end, and one RigL_ERK_per_epoch seed ended at 79.6%; a further SNFS seed (seed 1) was
stopped by the divergence guard (loss NaN near step 1700; it has no summary, so SNFS shows n=2). Static, SET,
Small-Dense, Pruning and Lottery trained in every seed. The cause is the learning rate meeting gradient-guided
growth, not a defect of the updates. `experiments/trace_mask_update.py` replays the collapsed RigL_ERK seed to
its third mask update (step 300, one thread as in the grid) and measures one batch: loss 1.45 before the update,
12.39 after the first optimizer step that follows it, and 1.44 with only the 2,369 weights grown at that update
set back to zero. Growth picks the inactive weights with the largest gradients, which are the ones one SGD step
moves the output most by (that step took them from 0 to up to 0.19 in fc3); in a 2%-dense conv net with no
normalisation layer, one such step at lr 0.1 is enough to knock the network out. SET regrows at random positions
and never collapsed. On MNIST's LeNet-300-100 the same trace (RigL_ERK, 2%, seed 0, update at step 300) finds
no such jump: the grown weights reach 0.017 after one step, and the loss goes from 0.46 to 0.62 (0.58 without
them; the rest is the drop). At lr 0.05 all twelve runs of the four collapsing methods train (next section).
The means above include the collapsed seeds: read them as what these methods do at lr 0.1, not as their
accuracy at 2%.

At 10% no seed of any method collapsed at lr 0.1: the sparse-from-scratch methods reach 90.3 (RigL, Static) to
91.0 (RigL_ERK_per_epoch, SET_ERK) against Dense's 91.18, within about 0.7 of each other; Small_Dense trails
at 89.1, and gradual pruning (91.16) and its lottery ticket (91.37) match Dense.

At 20% no seed collapsed either, and density barely matters any more: every method but two lies between 90.90
(Static) and 91.38 (Lottery) against Dense's 91.18, RigL_ERK at 91.27 with 0.29x of Dense's training FLOPs.
Uniform RigL trails at 90.71 and Small_Dense at 89.94. With a standard deviation of 0.1-0.5 over three seeds,
the order within the 90.9-91.4 band is not meaningful. The FLOPs columns matter more here than on the MLP:
at 20% of the weights SNFS costs 0.85x Dense's inference FLOPs, because momentum redistribution moves weights
into the conv layers, where one weight costs a multiply-add at every output position; RigL_ERK, which keeps its
ERK allocation, costs 0.29x, and gradual pruning ends at 0.42x."""

HEADLINE_INTRO = """One row per method and density. For RigL, SNFS and gradual pruning, the row is the variant (our
run directory name) with the best validation accuracy among every variant run at that density on seeds 0-2 in the
main grid, the ablations, the 2% variants and RigL's intervals (the grids below). Validation accuracy is the mean
over seeds of each run's `val_accuracy`: the final model's accuracy on the held-out validation split (the last 10%
of the training images), the same model whose test accuracy is shown. Neither test accuracy nor the best epoch's
validation accuracy (`best_val_accuracy`) plays any part in the choice. Published: Dettmers & Zettlemoyer's sparse
momentum figure at that density. Original code here: their own code run on this machine (next paragraph)."""

TARGETS_INTRO = """Each target is judged on the RigL or SNFS variant with the best validation accuracy at that
density, chosen as above; its test accuracy (mean of seeds 0-2) has to reach the target."""

TWO_PERCENT_FINDINGS = """Both variants were chosen, and their grid written, before either ran
(`experiments/grids/mnist_two_percent.yaml` says why each); both are judged by validation accuracy against
their baselines from the main grid. Neither reaches the 98.25 target. Letting RigL trade active weights between
layers by momentum (RigL_ERK_per_epoch_redistributed) is worse on both counts: 98.06 test and 98.33 validation
against 98.11 and 98.49. SNFS from ERK with the three details of Dettmers & Zettlemoyer's code
(SNFS_ERK_dettmers) gains 0.05 on test (98.18) and 0.06 on validation (98.37) over SNFS_ERK, less than a
3-seed mean's noise, and stays 0.07 short of the target, 0.02 below the published 98.20."""

INTERVAL_FINDINGS = """Both intervals were chosen, and their grid written, before either ran
(`experiments/grids/mnist_rigl_interval.yaml` says why); they are judged by validation accuracy against
RigL_ERK_per_epoch. Neither is better. Updating every 2 epochs gives 98.16 test and 98.44 validation, every 4
epochs 97.98 and 98.28, against 98.11 and 98.49 for one update an epoch: going from every 100 steps to every
epoch helped (RigL_ERK: 97.93 and 98.27), going further does not, and fewer updates explore less (in-time
over-parameterisation rate 0.14, 0.12, 0.10). Neither reaches the 98.25 target.

A note on noise: the first run of RigL_ERK_every_2_epochs, seed 0, was started while another grid held both
cores, with two threads, and resumed at epoch 53 with one; it ended at 98.25 test. Rerun from scratch with one
thread, as every other run here, the same seed ends at 98.32 (the table's figure). The order of floating-point
sums alone moves one run by 0.07 points, as much as the gap between the best 2% mean and the target."""

MORE_SEEDS_FINDINGS = """Seeds 3-5 of three 2% variants, unchanged (a test checks it), and each pooled with its
seeds 0-2 from the main grid or `mnist_two_percent` (rows marked *all seeds*). The target stays judged on seeds
0-2 as the issue defines it; six seeds say how far that judgement can move by chance. RigL_ERK_per_epoch: 98.19 on
the new seeds, 98.15 on all six (standard error 0.03). SNFS_ERK_dettmers: 98.13 and 98.16 (0.04). SNFS: 98.06 and
98.05 (0.015). The best 2% mean of either method is about 98.15, 3.3 (RigL) and 2.3 (SNFS) standard errors below
the 98.25 target: the miss is not bad luck with three seeds. The same figures settle the flagged SNFS difference:
with the seed project's schedule our SNFS is 0.15 below the published 98.20 on six seeds, more than noise; with
the three details of Dettmers & Zettlemoyer's code (and ERK layer densities) it is 98.16, within 0.04 of it."""

LR_FINDINGS = """The four methods that collapsed at lr 0.1 (baselines: the main grid's runs, collapsed seeds
included), rerun at lr 0.05 with everything else unchanged (a test checks it), with Static_ERK and SET_ERK at the
same learning rate for a fair comparison. Every one of the 18 runs trains. At lr 0.05 the dynamic methods beat
Static_ERK (86.44) by 1.4 to 2.7 points: SNFS 89.15, SNFS_ERK 88.77, RigL 88.63, SET_ERK 87.93, RigL_ERK 87.82.
Halving the learning rate costs the methods that never collapsed about a point (Static_ERK 87.65 and SET_ERK
88.90 at lr 0.1), so no single learning rate is best for all of them; gradual pruning and its lottery ticket at
lr 0.1 (90.57 and 90.61) stay ahead of all. Halving it does not remove the jump after an update either (the trace
of RigL_ERK seed 1 at lr 0.05, its update at step 200: loss 0.94 before, 3.47 after the next step, 1.29 without
the grown weights), but the network now recovers from it."""

ABLATION_FINDINGS = """Each variant changes one group of settings of the method, never the recipe (the grid repeats
the main grid's `common` block, a test checks it). Rows marked *baseline* are the main grid's runs. SNFS_to_end: every
parameter decayed, biases included, and mask updates after every epoch until the end (Dettmers & Zettlemoyer's
code); SNFS_dettmers: also regrown weights keep their momentum; RigL_ERK_to_end: RigL updates until the end
instead of 75%. RigL on SNFS's schedule, the fourth variant, moved to the main grid (RigL_ERK_per_epoch, shown here
among the baselines) to be run at every density."""


_MISSING = (None, "", "None")


def _grid_rows(grid: str) -> list[dict[str, str]]:
    runs = REPO / "results" / grid / "runs"
    out = REPO / "results" / grid / "report"
    # Each Lottery seed restarts from its own Pruning run, so masking.lottery_mask_path differs by seed alone:
    # pooled on purpose. Paths are given relative to the repository, so the reports hold no machine's paths.
    pooled = ["--pool", "masking.lottery_mask_path"] if (runs / "Lottery").is_dir() else []
    arguments = [str(runs.relative_to(REPO)), "--out", str(out.relative_to(REPO)), *pooled]
    if not runs.exists() or report_main(arguments) != 0:
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


def _cell(values: list[float] | tuple[float, ...]) -> str:
    mean = statistics.mean(values)
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:.2f}{spread} (n={len(values)})"


def _test(rows: list[dict[str, str]]) -> list[float]:
    return [100 * float(row["test_accuracy"]) for row in rows]


def _validation(rows: list[dict[str, str]]) -> list[float]:
    return [100 * float(row["val_accuracy"]) for row in rows if row.get("val_accuracy") not in _MISSING]


def _family(variant: str) -> str:
    """The method a variant belongs to: the part of its name before the first underscore (SNFS_ERK -> SNFS)."""
    return variant.split("_")[0]


def _reference_cell(density: float | None) -> str:
    runs = REFERENCE_CODE_RUNS.get(density) if density is not None else None
    return _cell(runs) if runs else "—"


def choose_by_validation(candidates: dict[str, list[dict[str, str]]]) -> str | None:
    """The variant with the highest mean validation accuracy (`val_accuracy`); test accuracy is never read.

    Variants with validation accuracy for at least 3 seeds are preferred (all count when none has 3); a tie
    goes to the name that sorts first. None when no variant has a validation accuracy.

    :param candidates: variant name -> its runs (rows of `runs.csv`)
    """
    measured = {name: _validation(rows) for name, rows in candidates.items()}
    measured = {name: values for name, values in measured.items() if values}
    complete = {name: values for name, values in measured.items() if len(values) >= 3} or measured
    if not complete:
        return None
    return max(sorted(complete), key=lambda name: statistics.mean(complete[name]))


def _table(grouped, compare: bool = True) -> list[str]:
    """Markdown rows, one per (variant, density); `compare` adds the published MNIST figures and what the
    original sparse momentum code reaches here."""
    lines = [
        "| method (our run directory name) | density | test accuracy % (mean ± std, n seeds) | published | "
        "original code here | difference from published | validation accuracy % | training FLOPs (x dense) | "
        "inference FLOPs (x dense) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (name, density), rows in sorted(grouped.items(), key=lambda item: (-(item[0][1] or 2.0), item[0][0])):
        accuracies = _test(rows)
        method = name.split(" (")[0]  # a baseline or pooled row is compared as the method it shows
        published_key = (method, density) if method != "Dense" else ("Dense", None)
        published = PUBLISHED.get(published_key) if compare and method in ("Dense", "SNFS", "SET") else None
        reference = _reference_cell(density) if compare and method == "SNFS" else "—"
        difference = ""
        if published is not None:
            gap = statistics.mean(accuracies) - published
            flag = " **flagged**" if abs(round(gap, 2)) > 0.1 else ""  # as shown: -0.10 is not over 0.1
            difference = f"{gap:+.2f}{flag}"
        validation = _validation(rows)
        train = statistics.mean(float(row["train_flops"]) for row in rows)
        inference = statistics.mean(float(row["inference_flops"]) for row in rows)
        lines.append(
            f"| {name} | {density if density is not None else _fixed_density(rows)} | {_cell(accuracies)} | "
            f"{published if published is not None else '—'} | {reference} | {difference or '—'} | "
            f"{f'{statistics.mean(validation):.2f}' if validation else '—'} | {train:.4f} | {inference:.4f} |"
        )
    return lines


def _fixed_density(rows: list[dict[str, str]]) -> float:
    """The density of runs whose directory names none: 1.0 for dense, n/m for an N:M pattern (from the runs)."""
    return round(statistics.mean(float(row["density"]) for row in rows), 4) if rows and "density" in rows[0] else 1.0


def headline_candidates(grouped_by_grid: dict[str, dict]) -> dict:
    """Every (variant, density) of `HEADLINE_GRIDS` with its runs, as read from each grid (no relabelled
    baseline or pooled rows); on a name clash the grid listed first keeps it."""
    candidates: dict = {}
    for grid in HEADLINE_GRIDS:
        for key, rows in grouped_by_grid.get(grid, {}).items():
            candidates.setdefault(key, rows)
    return candidates


def _pick(candidates: dict, density: float, families: tuple[str, ...]) -> tuple[str, list] | None:
    """The variant of `families` at `density` with the best validation accuracy, and its runs."""
    pool = {name: rows for (name, d), rows in candidates.items() if d == density and _family(name) in families}
    name = choose_by_validation(pool)
    return None if name is None else (name, pool[name])


def _headline(candidates: dict) -> list[str]:
    """The headline table: Dense, then for each density the validation-chosen RigL, SNFS and pruning rows."""
    lines = [
        "| method: variant chosen by validation | density | validation accuracy % | test accuracy % "
        "(mean ± std, n seeds) | published (sparse momentum) | original code here | training FLOPs (x dense) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    dense = candidates.get(("Dense", None))
    chosen: list[tuple[str, float | None, tuple[str, list] | None]]
    chosen = [("Dense", None, None if dense is None else ("Dense", dense))]
    chosen += [
        (family, density, _pick(candidates, density, (family,)))
        for density in HEADLINE_DENSITIES
        for family in HEADLINE_FAMILIES
    ]
    for family, density, pick in chosen:
        if pick is None:
            continue
        name, rows = pick
        validation = _validation(rows)
        published = PUBLISHED.get(("SNFS", density) if density is not None else ("Dense", None))
        train = statistics.mean(float(row["train_flops"]) for row in rows)
        label = name if name == family else f"{family}: {name}"
        lines.append(
            f"| {label} | {density if density is not None else 1.0} | "
            f"{f'{statistics.mean(validation):.2f}' if validation else '—'} | {_cell(_test(rows))} | "
            f"{f'{published:.2f}' if published is not None else '—'} | {_reference_cell(density)} | {train:.3f} |"
        )
    return lines


def _targets(candidates: dict) -> list[str]:
    lines = [
        "| density | target (RigL or SNFS, mean of 3 seeds) | chosen by validation | validation accuracy % | "
        "test accuracy % | met |",
        "| ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for density, target in TARGETS.items():
        pick = _pick(candidates, density, ("RigL", "SNFS"))
        if pick is None:
            lines.append(f"| {density} | {target} | not run yet | — | — | — |")
            continue
        name, rows = pick
        values = _test(rows)
        mean = statistics.mean(values)
        met = (
            "yes"
            if mean >= target and len(values) >= 3
            else ("no" if len(values) >= 3 else "not yet (fewer than 3 seeds)")
        )
        validation = statistics.mean(_validation(rows))
        lines.append(f"| {density} | {target} | {name} | {validation:.2f} | {_cell(values)} | {met} |")
    return lines


def _reference_note() -> str:
    """What the original sparse momentum code reaches here, in words, from `REFERENCE_CODE_RUNS`."""
    densities = sorted(REFERENCE_CODE_RUNS)
    means = [statistics.mean(REFERENCE_CODE_RUNS[density]) for density in densities]
    reached = " and ".join(
        f"{mean:.2f} ± {statistics.stdev(runs):.2f} at {density:.0%} (seeds 0-{len(runs) - 1}: "
        f"{', '.join(f'{value:.2f}' for value in runs)})"
        for density, mean, runs in zip(densities, means, (REFERENCE_CODE_RUNS[d] for d in densities), strict=True)
    )
    published = [PUBLISHED[("SNFS", density)] for density in densities]
    gaps = [value - mean for value, mean in zip(published, means, strict=True)]
    text = (
        "**The original code, run here.** Dettmers & Zettlemoyer's own sparse momentum code (their "
        "`sparse_learning` repository at commit e19ff16), run with its own defaults on the same MNIST data, on "
        "this kind of machine with one thread per run, and read at the final model after epoch 100 as ours are, "
        f"reaches a test accuracy of {reached}: {' and '.join(f'{gap:.2f}' for gap in gaps)} below its published "
        f"{' and '.join(f'{value:.2f}' for value in published)}. The published figures are not reached by the "
        "code that produced them when it runs here, so our rows are compared with both: at 2% and 5% the "
        "validation-chosen RigL and SNFS rows are at or above what that code reaches here, and below the "
        "published figures."
    )
    return textwrap.fill(text, width=115, break_long_words=False, break_on_hyphens=False)


def _baselines(grouped: dict, grid: str, density: float, names: tuple[str, ...]) -> dict:
    """The named variants of another grid's `_summaries` at one density, relabelled as baselines."""
    chosen = {key: rows for key, rows in grouped.items() if key[0] in names and key[1] == density}
    return {(f"{name} (baseline: {grid})", d): rows for (name, d), rows in chosen.items()}


def structured_comparison(grid: str, grouped: dict, baseline_grid: dict) -> list[str]:
    """Each structured variant beside its unstructured baseline at the same density: the difference of the
    3-seed mean test accuracies, and whether it is within `STRUCTURED_TOLERANCE` (the issue's target: SRigL
    within 0.3 points of RigL, 2:4 within 0.3 of dense). Test accuracy of the final model of every run on both
    sides: nothing is chosen here, so nothing is chosen on test."""
    source, baseline, densities, variants = STRUCTURED_BASELINES[grid]
    lines = [
        f"| variant | density | test accuracy % | {baseline} ({source}) | difference | within {STRUCTURED_TOLERANCE} |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for variant in variants:
        for density in densities:
            ours = grouped.get((variant, density), [])
            theirs = baseline_grid.get((baseline, density), [])
            if not ours or not theirs:
                continue
            gap = statistics.mean(_test(ours)) - statistics.mean(_test(theirs))
            shown = density if density is not None else _fixed_density(ours)
            verdict = "yes" if gap >= -STRUCTURED_TOLERANCE else f"**no** ({gap:+.2f})"
            complete = "" if len(ours) >= 3 and len(theirs) >= 3 else " (fewer than 3 seeds)"
            lines.append(
                f"| {variant} | {shown} | {_cell(_test(ours))} | {_cell(_test(theirs))} | {gap:+.2f} | "
                f"{verdict}{complete} |"
            )
    return lines


def _pooled(grouped: dict, earlier: dict[str, dict]) -> dict:
    """Each variant of `grouped` with the runs of the same name and density from earlier grids: more seeds."""
    pooled = {}
    for (name, density), rows in grouped.items():
        previous = [row for runs in earlier.values() for row in runs.get((name, density), [])]
        if previous:
            pooled[(f"{name} (all seeds)", density)] = previous + rows
    return pooled


def _headline_section(candidates: dict) -> str:
    """The page's first section: the headline rows and the targets, both chosen by validation accuracy."""
    if not candidates:
        return ""
    return (
        "## Headline: MNIST, LeNet-300-100, 100 epochs\n\n"
        f"{HEADLINE_INTRO}\n\n" + "\n".join(_headline(candidates)) + f"\n\n{_reference_note()}\n\n"
        f"### Targets\n\n{TARGETS_INTRO}\n\n" + "\n".join(_targets(candidates)) + "\n\n"
    )


VIT_NOTES = """6 epochs of Adam (lr 1e-3, a one-epoch linear warm-up, then a cosine decay; batch 100, the last 10% of
the training images held out for validation), the recipe of `experiments/grids/fashion_mnist_vit.yaml`, chosen
before any run; about 2.6 minutes a run on this machine, two at a time. 6 epochs is what fitted the session the
grid ran in (the file says why it is not the 10 first planned); nothing published uses this recipe, so the
methods are compared with each other and with the dense baseline.

Every weight matrix of ViT-tiny is masked: the patch embedding, the attention projections (`in_proj_weight`,
`out_proj`), the MLPs and the head; only the class token and the position table stay dense. Dense reaches 87.68
(validation 88.46). Ranked by validation accuracy, at 10% density: SNFS_ERK 86.53, SET_ERK 86.37, Pruning 86.29,
RigL_ERK 86.09, Static_ERK 85.98; at 20%: Pruning 87.60, SET_ERK 87.51, SNFS_ERK 87.39, Static_ERK 87.04,
RigL_ERK 86.79. Every sparse method is 1.9 to 2.4 points below dense at 10% and 0.9 to 1.6 at 20%, and the
methods lie within 0.8 points of each other, a few times the spread between seeds (standard deviations 0.05 to
0.33). RigL gains nothing over static masks on this budget.

The inference FLOPs at 10% density are 0.153 of dense, not 0.10: the attention scores (queries times keys,
weights times values) multiply activations, not weights, and stay dense; they are about 6% of this model's
FLOPs. SNFS's training FLOPs (0.43 at 10%) count its dense gradients, Pruning's (0.33) its dense start."""


SRIGL_NOTES = """SRigL runs with its paper's defaults (ERK layer densities in whole neurons, drop fraction 0.3
cosine-annealed, an update every 100 steps until 75% of training, neurons with under 30% salient weights
ablated) on the exact recipe of the grid holding the RigL_ERK baseline; both sides are read at the final model of
every run, so nothing here is chosen on test. Every output neuron keeps the same number of active inputs, which is
what the condensed export turns into a small dense matrix and an index table. The whole-neuron rounding leaves a
layer at most one neuron's fan-in short of its budget (density 0.0999 instead of 0.1)."""

NM_NOTES = """SR-STE (`masking=NM`): dense weights trained straight through, the N:M mask recomputed from |w| at every
step, the sparse-refined decay 2e-4; the model holds exact N:M weights after every step, so evaluation, the final
masks and export see them. Same recipe as the dense baseline. Training FLOPs count the sparse forward and input
gradient with the dense weight gradient; on a CPU nothing in the step is truly sparse, and a step costs 1.6-2.5
dense steps (`python -m benchmarks.nm_step`)."""


def main() -> int:
    os.chdir(REPO)  # the reports write paths relative to the current directory
    sections = []
    grouped_by_grid: dict[str, dict] = {}  # GRIDS lists each baseline grid before the ablations that use it
    for grid, title in GRIDS.items():
        rows = _grid_rows(grid)
        if not rows:
            sections.append(f"## {title}\n\nNo finished runs yet (`experiments/grids/{grid}.yaml`).\n")
            continue
        grouped = _summaries(rows)
        grouped_by_grid[grid] = dict(grouped)
        if grid in ABLATION_BASELINES:
            source, density, names = ABLATION_BASELINES[grid]
            grouped.update(_baselines(grouped_by_grid.get(source, {}), source, density, names))
        if grid in POOLED_GRIDS:
            earlier = {other: runs for other, runs in grouped_by_grid.items() if other != grid}
            grouped.update(_pooled(grouped_by_grid[grid], earlier))
        figure = REPO / "results" / grid / "report"
        plots = sorted(figure.glob("*accuracy_vs_density.png"))
        image = ""
        if plots:
            target = REPO / "docs" / "img" / f"{grid}_accuracy_vs_density.png"
            shutil.copyfile(plots[0], target)
            image = f"![accuracy against density, {title}](img/{target.name})\n"
        body = "\n".join(_table(grouped, compare=grid.startswith("mnist")))
        if grid in STRUCTURED_BASELINES:
            source = STRUCTURED_BASELINES[grid][0]
            comparison = structured_comparison(grid, grouped, grouped_by_grid.get(source, {}))
            body += "\n\n**Beside the unstructured baseline:**\n\n" + "\n".join(comparison)
        extra = {
            "mnist_lenet300_100": "\n\n" + MNIST_DIFFERENCES,
            "mnist_ablations": "\n\n" + ABLATION_FINDINGS,
            "mnist_two_percent": "\n\n" + TWO_PERCENT_FINDINGS,
            "mnist_rigl_interval": "\n\n" + INTERVAL_FINDINGS,
            "mnist_more_seeds": "\n\n" + MORE_SEEDS_FINDINGS,
            "fashion_mnist_lr": "\n\n" + LR_FINDINGS,
            "fashion_mnist_lenet5": "\n\n" + FASHION_NOTES,
            "fashion_mnist_vit": "\n\n" + VIT_NOTES,
            "mnist_srigl": "\n\n" + SRIGL_NOTES,
            "fashion_mnist_srigl": "\n\n" + SRIGL_NOTES,
            "mnist_nm": "\n\n" + NM_NOTES,
        }.get(grid, "")
        sections.append(
            f"## {title}\n\n{len(rows)} finished runs; full tables, CSV and plots: "
            f"`results/{grid}/report/report.md`.\n\n{image}\n{body}{extra}\n"
        )
    page = (
        "# Results\n\n"
        "Generated by `.venv/bin/python -m experiments.results_page` from the runs committed under `results/`\n"
        "(each run's `summary.json`, `metrics.jsonl`, `config.yaml` and `final_masks.pt`, the final masks\n"
        "at one bit per weight: `.venv/bin/python -m experiments.pack_masks results/` packs older ones; checkpoints\n"
        "are not committed, and re-running a grid on a fresh clone regenerates every file). The grids are\n"
        "`experiments/grids/*.yaml`, run with `.venv/bin/python -m experiments.run_grid GRID --jobs 2`, which skips\n"
        "finished runs. Published numbers: Dettmers & Zettlemoyer's released MNIST LeNet-300-100 results; beside\n"
        "them, what their own code reaches when run here (first section).\n"
        "A difference of more than 0.1 percentage point is flagged.\n\n"
        + _headline_section(headline_candidates(grouped_by_grid))
        + "\n".join(sections)
    )
    (REPO / "docs" / "results.md").write_text(page)
    print(f"wrote {REPO / 'docs' / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
