"""Which runs a report averages together, and what each table row is called.

Runs are averaged only when their identity settings (`sparselearning.runs.identity`) are equal except the
seed: the same experiment repeated. A table row is one experiment at every density it was run at (its
settings without the seed and `masking.density`). Rows normally carry the method variant's name ("RigL
(ERK)"); when several rows of one dataset and model share that name, each label adds the settings that tell
them apart, e.g. `SNFS [optimizer.lr=0.05]`, so runs that differ in, say, the learning rate are neither
averaged together nor shown under one name. `pool` names settings to average over on purpose (left out of
both the group and the row).

Settings are added to the code over time, so runs written earlier lack some keys. As in
`identity.differences(..., lenient=True)`, a key that some runs of the report lack counts as unset where
another run holds an empty value for it (None, false, 0, {} or []): the default that kept the old behaviour.
Keys every run has are compared exactly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sparselearning.errors import SparseLearningError
from sparselearning.report.collect import RunRecord
from sparselearning.runs.identity import is_unset, settings_hash

SEED_KEY = "seed"
DENSITY_KEY = "masking.density"
# At most this many differing settings are spelt out in a row label; the rest are counted.
MAX_LABEL_KEYS = 3
MAX_LABEL_VALUE = 40
_UNSET = "—"


def check_pool(runs: Sequence[RunRecord], pool: Iterable[str]) -> tuple[str, ...]:
    """The `--pool` keys, each of which must be a setting of at least one run (a misspelt key would
    silently pool nothing)."""
    keys = tuple(dict.fromkeys(pool))
    known = set().union(*(run.settings for run in runs)) if runs else set()
    for key in keys:
        if key != SEED_KEY and key not in known:
            examples = ", ".join(sorted(known - {SEED_KEY})[:4]) or "none (the runs record no settings)"
            raise SparseLearningError(f"--pool {key}: no run has the setting {key!r}; settings are e.g. {examples}")
    return keys


def group_id(settings: Mapping[str, Any], pool: Sequence[str] = ()) -> str:
    """The hash shared by the runs a table cell averages: every setting but the seed and the pooled ones."""
    return settings_hash(settings, leave_out=(SEED_KEY, *pool))


def comparable_settings(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Each run's settings without the keys that only some runs have and this run holds empty."""
    if not runs:
        return []
    everywhere = set(runs[0].settings).intersection(*(run.settings for run in runs[1:]))
    return [
        {key: value for key, value in run.settings.items() if key in everywhere or not is_unset(value)} for run in runs
    ]


def _row_id(run: RunRecord, settings: Mapping[str, Any], pool: Sequence[str]) -> tuple[str, str, str, str]:
    digest = settings_hash(settings, leave_out=(SEED_KEY, DENSITY_KEY, *pool))
    return (*run.dataset_model, run.variant, digest)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _shown(value: Any, missing: bool) -> str:
    """A setting's value in a label; a long one keeps its end, where paths differ (`…/density_0.05/seed_1`)."""
    if missing:
        return _UNSET
    text = value if isinstance(value, str) else _canonical(value)
    return text if len(text) <= MAX_LABEL_VALUE else "…" + text[-(MAX_LABEL_VALUE - 1) :]


def differing_keys(settings: Sequence[Mapping[str, Any]], ignore: Iterable[str] = ()) -> list[str]:
    """The keys (sorted) whose value is not the same in all of `settings` (absent counts as a value)."""
    skipped = set(ignore)
    keys = sorted(set().union(*settings) - skipped) if settings else []
    return [key for key in keys if len({_canonical(s[key]) if key in s else None for s in settings}) > 1]


def _labels(variant: str, members: list[Mapping[str, Any]], ignore: Sequence[str]) -> list[str]:
    """Row labels for rows that share one variant name: the name, plus the first few settings that differ."""
    if len(members) == 1:
        return [variant]
    keys = differing_keys(members, ignore)
    shown, more = keys[:MAX_LABEL_KEYS], len(keys) - MAX_LABEL_KEYS
    labels = []
    for settings in members:
        parts = [f"{key}={_shown(settings.get(key), key not in settings)}" for key in shown]
        if more > 0:
            parts.append(f"+{more} more")
        labels.append(f"{variant} [{', '.join(parts)}]")
    return labels


def assign_rows(runs: Sequence[RunRecord], pool: Iterable[str] = ()) -> None:
    """Set every run's `group` (what it is averaged with) and `row` (its table row's label).

    Labels are unique within a dataset and model: where two rows would still read the same (they differ
    only beyond the keys shown, or a method's own name looks like a label), the row's hash is appended.
    """
    keys = check_pool(runs, pool)
    ignore = (SEED_KEY, DENSITY_KEY, *keys)
    rows: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    row_ids = []
    for run, settings in zip(runs, comparable_settings(runs)):
        run.group = group_id(settings, keys)
        row_ids.append(_row_id(run, settings, keys))
        rows.setdefault(row_ids[-1], settings)
    by_variant: dict[tuple[str, str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    for row in rows:
        by_variant[row[:3]].append(row)
    label_of: dict[tuple[str, str, str, str], str] = {}
    for (_, _, variant), members in by_variant.items():
        members.sort(key=lambda row: row[3])
        for row, label in zip(members, _labels(variant, [rows[m] for m in members], ignore)):
            label_of[row] = label
    users: dict[tuple[str, str, str], set] = defaultdict(set)
    for row, label in label_of.items():
        users[(row[0], row[1], label)].add(row)
    for row, label in label_of.items():
        if len(users[(row[0], row[1], label)]) > 1:
            label_of[row] = f"{label} #{row[3]}"
    for run, row in zip(runs, row_ids):
        run.row = label_of[row]
