"""A run's identity: every setting that can change what a run computes, and a short hash of it.

Two runs with the same identity compute the same thing (up to the machine); two runs that differ in any
identity setting are different experiments. Settings that only change where and how results are written
or shown (logging intervals, progress bars, plots, the data folder or file, the evaluation batch size, the
device choice `auto`) are left out, so changing them neither splits a sweep nor refuses a resume.

Settings are a flat mapping from dotted keys (`optimizer.lr`) to plain JSON values. They are computed from
a composed configuration in memory, or read as plain data from a stored `config.yaml` / checkpoint: nothing
here resolves interpolations or calls resolvers, so a stored file can never run code or read the
environment through it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

# Top-level keys and dotted prefixes that never change what is computed.
PRESENTATION_KEYS = frozenset(
    {
        "hydra",
        "exp_name",
        "device",
        "log_interval",
        "resume",
        "progress",
        "plots",
        "verify_sync",
        "distributed_timeout_s",
        "dataset.root",
        "dataset.path",  # a user's .npz file: where it lies is not what it holds (its fingerprint is)
        "dataset.download",
        "dataset.test_batch_size",
    }
)
# The settings a default run directory spells out in words; the hash in its name covers the rest.
NAMED_KEYS = ("dataset.name", "model.name", "masking.name", "masking.density", "seed")
HASH_LENGTH = 8
WORLD_SIZE_KEY = "world_size"
# The sha256 of a user's own data (dataset=Arrays or Custom), added once the data is read: the path or the
# function that gave it does not say which data it was. Datasets of the project have none, so their hashes
# are what they were before it existed.
FINGERPRINT_KEY = "dataset.fingerprint"


def _plain(value: Any) -> Any:
    """A JSON-stable form of one leaf value (tuples become lists, odd objects their text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists stay leaves; an empty mapping is kept as `{}`."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}.") if value else {dotted: {}})
        else:
            flat[dotted] = _plain(value)
    return flat


def _is_presentation(key: str) -> bool:
    return any(key == skip or key.startswith(f"{skip}.") for skip in PRESENTATION_KEYS)


def run_settings(config: Mapping[str, Any], world_size: int = 1) -> dict[str, Any]:
    """The identity settings of a plain (already resolved) configuration, plus the number of processes."""
    settings = {key: value for key, value in flatten(config).items() if not _is_presentation(key)}
    settings[WORLD_SIZE_KEY] = int(world_size)
    return dict(sorted(settings.items()))


def with_fingerprint(settings: Mapping[str, Any], fingerprint: str | None) -> dict[str, Any]:
    """`settings` with the data's fingerprint added (unchanged when there is none)."""
    if fingerprint is None:
        return dict(settings)
    return dict(sorted({**settings, FINGERPRINT_KEY: fingerprint}.items()))


def settings_hash(settings: Mapping[str, Any], leave_out: Iterable[str] = ()) -> str:
    """A short, stable hash of `settings` without the keys in `leave_out`."""
    skipped = set(leave_out)
    kept = {key: value for key, value in settings.items() if key not in skipped}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def directory_hash(settings: Mapping[str, Any]) -> str:
    """The hash a default run directory carries: everything its readable part does not already say."""
    return settings_hash(settings, leave_out=NAMED_KEYS)


def group_hash(settings: Mapping[str, Any]) -> str:
    """The hash shared by runs that differ only in their seed (what a report averages over)."""
    return settings_hash(settings, leave_out=("seed",))


def is_unset(value: Any) -> bool:
    """An empty setting (None, false, {} or []; 0 and 0.0 count too, as they equal False): what a setting added
    later has to hold for a run written before it to still count as made with the same settings."""
    return value in (None, False, {}, [])


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], lenient: bool = False) -> dict[str, tuple]:
    """`{key: (stored value, current value)}` for every identity setting that differs.

    `lenient` (for runs written before identities were stored) ignores keys that only one side has when
    the other side's value is empty (None, false, {} or []): settings added since then with a default that
    keeps the old behaviour.
    """
    missing = object()
    found: dict[str, tuple] = {}
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, missing), current.get(key, missing)
        if old == new:
            continue
        if lenient and (old is missing or new is missing) and is_unset(new if old is missing else old):
            continue
        found[key] = (None if old is missing else old, None if new is missing else new)
    return found


def describe_differences(found: Mapping[str, tuple], limit: int = 6) -> str:
    """`optimizer.lr 0.1 (this run: 0.01), ...`: the first `limit` differences in one line."""
    parts = [f"{key} {old!r} (this run: {new!r})" for key, (old, new) in list(found.items())[:limit]]
    if len(found) > limit:
        parts.append(f"and {len(found) - limit} more")
    return ", ".join(parts)
