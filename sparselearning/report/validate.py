"""Checking the values of a run's `summary.json` before a report shows them.

A summary is a file anyone can edit; a value outside what a run can produce (an accuracy of 1e308 or -5, a
density of 0, a layer map with 20,000 entries) would otherwise be averaged into a table as "inf ± inf" or make
the report crawl. `check_summary` returns the fields a report uses, or raises `SparseLearningError` naming the
first field that is wrong and what is allowed; the run is then listed as skipped.

What is allowed: accuracies and rates in [0, 1]; densities in (0, 1] (a whole model always keeps a weight),
per-layer densities in [0, 1] (global pruning may empty a layer); FLOPs, losses and times finite and >= 0;
counts whole numbers >= 0; names non-empty text of at most `MAX_NAME` characters; every other top-level number
finite. Only the scalar fields (at most `MAX_FIELDS`), `layer_density` (at most `MAX_LAYERS` entries) and
`settings` (at most `MAX_SETTINGS` keys) are kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sparselearning.errors import SparseLearningError

MAX_NAME = 200
MAX_FIELDS = 256
MAX_LAYERS = 4096
MAX_SETTINGS = 2048
MAX_SETTING_TEXT = 4096
MAX_SETTING_ITEMS = 256
MAX_SETTING_DEPTH = 4

REQUIRED_KEYS = ("method", "dataset", "model", "test_accuracy")
NAME_FIELDS = ("method", "dataset", "model")
FRACTION_FIELDS = ("test_accuracy", "test_top5", "val_accuracy", "best_val_accuracy", "itop_rate")
DENSITY_FIELDS = ("target_density", "density")
NON_NEGATIVE_FIELDS = (
    "test_loss",
    "inference_flops",
    "inference_flops_per_example",
    "dense_inference_flops_per_example",
    "train_flops",
    "wall_time_s",
)
COUNT_FIELDS = ("seed", "epochs", "steps", "active_weights", "masked_weights")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_range(key: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    if value is None:
        return
    bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
    if not _is_number(value) or not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        raise SparseLearningError(f"{key} must be a finite number {bounds}, got {_shown(value)}")


def _check_count(key: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise SparseLearningError(f"{key} must be a whole number >= 0, got {_shown(value)}")


def _check_name(key: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise SparseLearningError(
            f"{key} must be a non-empty text of at most {MAX_NAME} characters, got {_shown(value)}"
        )


def _layer_densities(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SparseLearningError(f"layer_density must map layer names to densities, got {type(value).__name__}")
    if len(value) > MAX_LAYERS:
        raise SparseLearningError(f"layer_density has {len(value)} entries; at most {MAX_LAYERS} layers are allowed")
    layers: dict[str, float] = {}
    for name, density in value.items():
        if len(str(name)) > MAX_NAME:
            raise SparseLearningError(f"layer_density has a layer name longer than {MAX_NAME} characters")
        _check_range(f"layer_density[{_shown(str(name))}]", density, 0.0, 1.0)
        layers[str(name)] = float(density)
    return layers


def _plain_setting(key: str, value: Any, depth: int = 0) -> int:
    """Check one setting's value (a plain value, or lists of them) and return how many values it holds."""
    if value is None or isinstance(value, (bool, int)):
        return 1
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SparseLearningError(f"settings[{_shown(key)}] must be finite, got {_shown(value)}")
        return 1
    if isinstance(value, str):
        if len(value) > MAX_SETTING_TEXT:
            raise SparseLearningError(f"settings[{_shown(key)}] is longer than {MAX_SETTING_TEXT} characters")
        return 1
    if isinstance(value, dict) and not value:
        return 1
    if isinstance(value, list) and depth < MAX_SETTING_DEPTH:
        count = 1 + sum(_plain_setting(key, item, depth + 1) for item in value)
        if count > MAX_SETTING_ITEMS:
            raise SparseLearningError(f"settings[{_shown(key)}] holds more than {MAX_SETTING_ITEMS} values")
        return count
    raise SparseLearningError(
        f"settings[{_shown(key)}] must be a plain value (text, number, true/false, null or lists of at most "
        f"{MAX_SETTING_ITEMS} of them, nested at most {MAX_SETTING_DEPTH} deep), got {_shown(value)}"
    )


def check_settings(value: Any, where: str = "settings") -> dict[str, Any]:
    """A run's identity settings (a flat mapping of dotted keys to plain values), checked and copied."""
    if not isinstance(value, Mapping):
        raise SparseLearningError(f"{where} must map setting names to values, got {type(value).__name__}")
    if len(value) > MAX_SETTINGS:
        raise SparseLearningError(f"{where} has {len(value)} keys; at most {MAX_SETTINGS} are allowed")
    settings: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME:
            raise SparseLearningError(f"{where} has a key that is not a name of 1-{MAX_NAME} characters")
        _plain_setting(key, item)
        settings[key] = item
    return settings


def check_summary(summary: Any) -> tuple[dict[str, Any], dict[str, float] | None, dict[str, Any] | None]:
    """(scalar fields, layer densities or None, settings or None) of a summary whose values are all allowed."""
    if not isinstance(summary, dict):
        raise SparseLearningError("summary.json does not hold a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in summary]
    if missing:
        raise SparseLearningError(f"summary.json lacks {', '.join(missing)}")
    if len(summary) > MAX_FIELDS:
        raise SparseLearningError(f"summary.json has {len(summary)} fields; at most {MAX_FIELDS} are allowed")
    for key in NAME_FIELDS:
        _check_name(key, summary[key])
    if summary["test_accuracy"] is None:
        raise SparseLearningError("test_accuracy must be a finite number in [0, 1], got None")
    for key in FRACTION_FIELDS:
        _check_range(key, summary.get(key), 0.0, 1.0)
    for key in DENSITY_FIELDS:
        _check_range(key, summary.get(key), 0.0, 1.0, low_open=True)
    for key in NON_NEGATIVE_FIELDS:
        _check_range(key, summary.get(key), 0.0, math.inf)
    for key in COUNT_FIELDS:
        _check_count(key, summary.get(key))
    scalars: dict[str, Any] = {}
    for key, value in summary.items():
        if not isinstance(key, str) or len(key) > MAX_NAME:
            raise SparseLearningError(f"summary.json has a field name longer than {MAX_NAME} characters")
        if isinstance(value, float) and not math.isfinite(value):
            raise SparseLearningError(f"{key} must be a finite number, got {_shown(value)}")
        if isinstance(value, str) and len(value) > MAX_SETTING_TEXT:
            raise SparseLearningError(f"{key} is longer than {MAX_SETTING_TEXT} characters")
        if value is None or isinstance(value, (str, int, float, bool)):
            scalars[key] = value
    settings = summary.get("settings")
    return (
        scalars,
        _layer_densities(summary.get("layer_density")),
        None if settings is None else check_settings(settings),
    )
