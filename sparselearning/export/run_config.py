"""A run's configuration as `export` reads it: plain YAML data that never chooses code to run.

The text is the checkpoint's "config" entry, or else the run directory's `config.yaml` (a regular file of at
most `MAX_CONFIG_BYTES`), parsed with `yaml.safe_load`: no object tags. Export reads only the fields it
needs: the `model` section (a registry name and its arguments), `dataset.name` (with `num_classes` and
`shape` for Synthetic, when the checkpoint has no "data" record of the data it trained on), and `masking.name`
(with `masking.density` when the method table says that the method narrows its models).

Nothing is interpolated or resolved: a `${...}` in one of those fields is refused, because resolving it would
read the environment or call a resolver that the file names. Interpolations elsewhere in the file (an
`exp_name: ${masking.name}`) are never looked at. A `model._target_` names a callable to import and call,
so export refuses it and says how to export such a model from Python, with the model built by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparselearning import method_table
from sparselearning.data.registry import KNOWN, DatasetInfo
from sparselearning.errors import SparseLearningError, first_line
from sparselearning.export.preprocessing import Preprocessing
from sparselearning.models.arguments import registry_model_arguments
from sparselearning.runs.files import load_yaml_data, read_text

MAX_CONFIG_BYTES = 1 << 20
#: Values one input example may hold (3 x 2364 x 2364); export runs a random batch of them through the model.
MAX_EXAMPLE_VALUES = 1 << 24
#: Values the `model` section may hold: a few in practice; YAML aliases can make a short text describe billions.
MAX_MODEL_VALUES = 10_000
MAX_CLASSES = 1 << 20

# The shape and class count of each dataset, without loading it (Synthetic reads its own config).
_DATASETS = {name: (info.num_classes, info.input_shape) for name, info in KNOWN.items()}
DATA_FIELDS = ("name", "num_classes", "input_shape", "input_kind", "mean", "std", "fingerprint")


@dataclass(frozen=True)
class RunConfig:
    """The sections of a run's configuration that export reads, and where they came from (for messages)."""

    origin: str
    model: dict[str, Any]
    dataset: dict[str, Any]
    masking: dict[str, Any]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_literal(value: Any, field: str, origin: str) -> Any:
    """`value` if it is plain, literal YAML data (numbers, strings, lists, string-keyed mappings) with no
    `${...}` interpolation anywhere and at most `MAX_MODEL_VALUES` values; else one error naming the field."""
    pending = [(field, value)]
    visited = 0
    while pending:
        where, item = pending.pop()
        visited += 1
        if visited > MAX_MODEL_VALUES:
            raise SparseLearningError(
                f"{field} in {origin} holds more than {MAX_MODEL_VALUES} values (YAML aliases?); export reads "
                "small, plain configurations"
            )
        if isinstance(item, str):
            if "${" in item:
                raise SparseLearningError(
                    f"{where} in {origin} is {_short(item)}, an interpolation; export reads configurations as "
                    "plain data and resolves nothing: write the value itself"
                )
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise SparseLearningError(f"{where} in {origin} has a key {_short(key)} that is not a string")
                pending.append((f"{where}.{key}", sub))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", sub) for index, sub in enumerate(item))
        elif not isinstance(item, (int, float, type(None))):
            raise SparseLearningError(
                f"{where} in {origin} is a {type(item).__name__}; only numbers, strings, lists and mappings are read"
            )
    return value


def _config_text(state: Mapping[str, Any], run_dir: Path | None, checkpoint: Path) -> tuple[str, str]:
    """The configuration text and where it came from: the checkpoint's "config" entry, else config.yaml."""
    text = state.get("config")
    if isinstance(text, str):
        if len(text) > MAX_CONFIG_BYTES:
            raise SparseLearningError(f"the run configuration in {checkpoint} is longer than {MAX_CONFIG_BYTES} bytes")
        return text, f"the run configuration of {checkpoint}"
    path = run_dir / "config.yaml" if run_dir is not None else None
    if path is None or not (path.exists() or path.is_symlink()):
        raise SparseLearningError(f"{checkpoint} has no run configuration and no config.yaml sits beside its run")
    return read_text(path, MAX_CONFIG_BYTES), f"the run configuration {path}"


def read_run_config(state: Mapping[str, Any], run_dir: Path | None, checkpoint: Path) -> RunConfig:
    """The model, dataset and masking sections of the run configuration a checkpoint belongs to."""
    text, origin = _config_text(state, run_dir, checkpoint)
    config = load_yaml_data(text, origin)
    sections = {}
    for name in ("model", "dataset", "masking"):
        section = config.get(name) if isinstance(config, dict) else None
        sections[name] = section if isinstance(section, dict) else {}
    required = [("model", "name"), ("dataset", "name"), ("masking", "name")]
    for section, key in required:
        if sections[section].get(key) is None and not (section == "model" and "_target_" in sections["model"]):
            raise SparseLearningError(f"{origin} has no {section}.{key}")
    return RunConfig(origin, sections["model"], sections["dataset"], sections["masking"])


def _field(config: RunConfig, section: str, key: str) -> Any:
    return check_literal(getattr(config, section).get(key), f"{section}.{key}", config.origin)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dataset_info(config: RunConfig) -> Any:
    """The `DatasetInfo` a model needs (classes, input shape) from a run configuration, loading no data."""
    name = _field(config, "dataset", "name")
    if name == "Synthetic":
        num_classes, shape = _field(config, "dataset", "num_classes"), _field(config, "dataset", "shape")
        if not _whole(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
            raise SparseLearningError(
                f"dataset.num_classes in {config.origin} must be a whole number in [1, {MAX_CLASSES}], "
                f"got {_short(num_classes)}"
            )
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(_whole(size) and size >= 1 for size in shape)
            or math.prod(shape) > MAX_EXAMPLE_VALUES
        ):
            raise SparseLearningError(
                f"dataset.shape in {config.origin} must be 3 whole numbers >= 1 (channels, height, width) with at "
                f"most {MAX_EXAMPLE_VALUES} values in all, got {_short(shape)}"
            )
        shape = tuple(shape)
    elif name in _DATASETS:
        num_classes, shape = _DATASETS[name]
    elif name in ("Arrays", "Custom"):
        raise SparseLearningError(
            f"{config.origin} is a run on dataset={name}, and its checkpoint records no description of the data "
            "(shape, classes, normalisation); export needs it and never reads or calls the data itself"
        )
    else:
        raise SparseLearningError(
            f"unknown dataset {_short(name)} in {config.origin}; allowed: Synthetic, {', '.join(_DATASETS)}"
        )
    channels = shape[0]
    return DatasetInfo(name, num_classes, shape, (0.0,) * channels, (1.0,) * channels, augment=False)


def data_description(record: Any, config: RunConfig, checkpoint: Path) -> tuple[DatasetInfo, Preprocessing | None]:
    """The data a run trained on, and the input preprocessing its model expects, without loading or calling it.

    A checkpoint records them (its "data" entry, plain data checked here field by field); one written before it
    did gets the shape and classes from its configuration (`dataset_info`) and, for the datasets this project
    ships readers for, their published normalisation; for Synthetic it then has no preprocessing (None). For the
    project's own datasets the configuration is read either way, and a record that disagrees with it is refused.
    """
    own_data = _field(config, "dataset", "name") in ("Arrays", "Custom")
    configured = None if own_data and record is not None else dataset_info(config)
    if record is None:
        assert configured is not None
        info = configured
        known = KNOWN.get(info.name)
        if known is None:
            return info, None
        return info, Preprocessing("uint8", known.input_shape, known.mean, known.std)
    where = f"the checkpoint {checkpoint}"
    if not isinstance(record, dict) or set(record) != set(DATA_FIELDS):
        found = sorted(map(str, record)) if isinstance(record, dict) else type(record).__name__
        raise SparseLearningError(f"'data' of {where} must hold exactly {', '.join(DATA_FIELDS)}; found {found}")
    name, classes, digest = record["name"], record["num_classes"], record["fingerprint"]
    if name != _field(config, "dataset", "name"):
        raise SparseLearningError(
            f"'data.name' of {where} is {_short(name)}, but {config.origin} trains on {_short(config.dataset['name'])}"
        )
    if not _whole(classes) or not 1 <= classes <= MAX_CLASSES:
        raise SparseLearningError(
            f"'data.num_classes' of {where} must be a whole number in [1, {MAX_CLASSES}], got {_short(classes)}"
        )
    if digest is not None and not isinstance(digest, str):
        raise SparseLearningError(f"'data.fingerprint' of {where} must be text or null, got {_short(digest)}")
    fields = {key: record[key] for key in ("input_kind", "input_shape", "mean", "std")}
    preprocessing = Preprocessing.from_record(fields, where)
    if configured is not None and (configured.num_classes, configured.input_shape) != (
        classes,
        preprocessing.input_shape,
    ):
        raise SparseLearningError(
            f"'data' of {where} records {classes} classes of shape {list(preprocessing.input_shape)}, but "
            f"{config.origin} has {configured.num_classes} of shape {list(configured.input_shape)}"
        )
    info = DatasetInfo(
        name,
        classes,
        preprocessing.input_shape,
        preprocessing.mean,
        preprocessing.std,
        augment=False,
        input_kind=preprocessing.input_kind,
        fingerprint=digest,
    )
    return info, preprocessing


def _narrows_model(method_name: Any) -> bool:
    """Whether the run's method trains a narrowed model (Small-Dense), by its entry in the method table. A method
    this process does not know (registered by the run's own code) is taken to train the full width; a wrong guess
    cannot pass unnoticed, because the stored weights then do not fit the rebuilt model."""
    try:
        return method_table.get(method_name, "masking.name").narrows_model
    except SparseLearningError:
        return False


def model_spec(config: RunConfig, info: Any) -> dict[str, Any]:
    """The registry name and keyword arguments that rebuild the run's model (what training's `build_model`
    passes), from literal data only; a `model._target_` is refused with how to export such a model."""
    if "_target_" in config.model:
        raise SparseLearningError(
            f"the run's model is built by model._target_ ({_short(config.model['_target_'])}), code that export "
            "never calls on a file's say-so; export it from Python with the model you build: "
            "sparselearning.export.export_checkpoint(RUN, OUT, model=model)"
        )
    check_literal(config.model, "model", config.origin)
    if not isinstance(config.model.get("name"), str):
        raise SparseLearningError(
            f"model.name in {config.origin} must be a registry name, got {_short(config.model.get('name'))}"
        )
    width = float(_field(config, "masking", "density")) if _narrows_model(_field(config, "masking", "name")) else 1.0
    try:
        # Interpolation-free by the checks above, so resolving inside registry_model_arguments has nothing to do.
        name, kwargs = registry_model_arguments(OmegaConf.create({"model": config.model}), info, width)
    except SparseLearningError as error:
        raise SparseLearningError(f"{error} (in {config.origin})") from None
    except Exception as error:
        reason = first_line(error, limit=None)
        raise SparseLearningError(f"cannot rebuild the model of {config.origin}: {_short(reason, 200)}") from None
    return {"name": name, "kwargs": kwargs}
