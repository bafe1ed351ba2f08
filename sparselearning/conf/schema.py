"""Typed settings of `sparselearning train`: one dataclass per config group option, holding its defaults and,
beside each field, the check that refuses a bad value in one line.

The YAML files of `sparselearning/conf/` are what Hydra composes (the groups need options, and a run's
identity hash is computed from exactly the keys they hold); a test keeps every file equal to its dataclass
here, and the masking files equal to the method table's `cli_config`, so no default is kept in two places.
The dataclasses are also stored in Hydra's ConfigStore under `schema/<group>/<option>` (and `schema/config`).

`typed(cfg)` turns a composed configuration into a `RunConfig`: each group's keys are checked against its
dataclass (an unknown key is refused, naming the allowed ones), each value by its field's check (the
messages name the key, the value and what is allowed), and the result is merged into the structured
schema, so the code reads `config.optimizer.lr`, a float, instead of untyped lookups with repeated defaults.
The composed configuration itself is left as it is: the run identity is computed from it, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparselearning import method_table
from sparselearning.data.custom import check_target_node
from sparselearning.errors import (
    SparseLearningError,
    check_choice,
    check_density,
    check_fraction,
    check_positive_int,
)
from sparselearning.funcs.grow import registry as grow_registry
from sparselearning.funcs.init_scheme import registry as init_registry
from sparselearning.funcs.n_m import check_n_m, nm_density
from sparselearning.funcs.prune import registry as prune_registry
from sparselearning.funcs.redistribute import registry as redistribute_registry

# A check takes the raw value and the setting's name (as messages spell it) and returns the value or raises.
Check = Callable[[Any, str], Any]
# Largest learning rate accepted: beyond it every step overflows (1e40 ended in a traceback).
MAX_LR = 100.0
MIXED_PRECISION = ("false", "off", "true", "bf16", "fp16")
OPTIMIZERS = ("SGD", "Adam")
SCHEDULES = ("step", "cosine")
APPLY_WHEN = ("step_end", "epoch_end")
DEVICES = ("auto", "cpu", "cuda")
MISSING_VALUE = "???"  # Hydra's mark for a value the user must give


# ---------------------------------------------------------------------------------------------- checks


def number(minimum: float, inclusive: bool = True, maximum: float | None = None) -> Check:
    """A finite number at or above (or strictly above) `minimum`, and at most `maximum`."""

    def check(value: Any, name: str) -> float:
        bound = ">=" if inclusive else ">"
        refusal = SparseLearningError(f"{name} must be a number {bound} {minimum:g}, got {value!r}")
        if isinstance(value, bool):
            raise refusal
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise refusal from None
        if not math.isfinite(result) or result < minimum or (not inclusive and result == minimum):
            raise refusal
        if maximum is not None and result > maximum:
            raise SparseLearningError(f"{name} must be a number <= {maximum:g}, got {value!r}")
        return result

    return check


def whole(minimum: int) -> Check:
    """A whole number (an int, not a bool or float) of at least `minimum`."""

    def check(value: Any, name: str) -> int:
        if minimum == 1:
            return check_positive_int(value, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SparseLearningError(f"{name} must be a whole number >= {minimum}, got {value!r}")
        return value

    return check


def boolean(value: Any, name: str) -> bool:
    """true or false, nothing else (`resume=maybe` and `resume=no` are refused, not read as true)."""
    if not isinstance(value, bool):
        raise SparseLearningError(f"{name} must be true or false, got {value!r}")
    return value


def choice(options: Any) -> Check:
    """One of `options` (a tuple, or a registry whose keys are the options)."""

    def check(value: Any, name: str) -> str:
        return check_choice(name, value, options)

    return check


def fraction(value: Any, name: str) -> float:
    return check_fraction(value, name)


def betas(value: Any, name: str) -> list[float]:
    """Adam's two betas, each in [0, 1)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SparseLearningError(f"{name} must be two numbers in [0, 1), got {value!r}")
    for beta in value:
        if number(0.0, maximum=1.0)(beta, name) == 1.0:
            raise SparseLearningError(f"{name} must be two numbers in [0, 1), got {list(value)!r}")
    return [float(beta) for beta in value]


def mixed_precision(value: Any, name: str) -> bool | str:
    if value is not False and str(value).lower() not in MIXED_PRECISION:
        raise SparseLearningError(f"{name} must be false, true, bf16 or fp16, got {value!r}")
    return value


def auto_or_boolean(value: Any, name: str) -> bool | str:
    if value != "auto" and not isinstance(value, bool):
        raise SparseLearningError(f"{name} must be auto, true or false, got {value!r}")
    return value


seed = whole(0)  # a run's seed: any whole number from 0


def entries(value: Any, name: str) -> list[str]:
    """A list of include/exclude entries: parameter-name patterns, names or parts of names (text)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise SparseLearningError(
            f"{name} must be a list of parameter-name patterns such as [embed, 'blocks.*.mlp.*'], got {value!r}"
        )
    return list(value)


def overrides(value: Any, name: str) -> dict[str, float]:
    """`{pattern: density}` with every density in (0, 1]."""
    if not isinstance(value, Mapping) or not value:
        raise SparseLearningError(
            f"{name} must be a mapping of parameter-name patterns to densities such as {{'head.*': 1.0}}, got {value!r}"
        )
    return {str(key): check_density(density, f"{name}[{key!r}]") for key, density in value.items()}


def sparse_compute_setting(value: Any, name: str) -> bool | str | None:
    """true, false or auto (null: not given, i.e. false)."""
    if value is None or isinstance(value, bool) or value == "auto":
        return value
    raise SparseLearningError(f"{name} must be true, false or auto, got {value!r}")


def setting(default: Any, check: Check | None = None, label: str = "") -> Any:
    """A dataclass field with its check and, where messages name it differently, its label.

    :param default: the default value (the one place it is kept)
    :param check: refuses a bad value in one line; not called for null where the field is Optional
    :param label: how messages name the setting, after its dotted key (`(drop fraction)`)
    """
    return field(default=default, metadata={"check": check, "label": label})


# ---------------------------------------------------------------------------------------------- groups


@dataclass
class DatasetConfig:
    """Settings every dataset takes: what to load, where from, and the batch sizes."""

    name: str = setting(MISSING_VALUE)
    root: str | None = setting(None)  # the data folder; presentation only (not in the run identity)
    batch_size: int = setting(100, whole(1))
    test_batch_size: int = setting(1000, whole(1))  # evaluation only (not in the run identity)
    augment: bool | None = setting(None, boolean)  # null: the dataset's default

    def loader_options(self, seed: int) -> dict[str, Any]:
        """The keyword options of `data.registry.load_dataset` besides `root`."""
        return {}


@dataclass
class SplitDatasetConfig(DatasetConfig):
    """MNIST and Fashion-MNIST: a validation split can be carved from the pooled training data."""

    val_fraction: float | None = setting(None, number(0.0, inclusive=False, maximum=0.9))


@dataclass
class CifarConfig(DatasetConfig):
    """CIFAR-10 and CIFAR-100, read from (or downloaded into) `root`."""

    batch_size: int = setting(128, whole(1))
    download: bool = setting(False, boolean)

    def loader_options(self, seed: int) -> dict[str, Any]:
        return {"download": self.download}


@dataclass
class SyntheticConfig(DatasetConfig):
    """Random class-conditional images: fast tests and examples without any download."""

    name: str = setting("Synthetic")
    num_classes: int = setting(10, whole(1))
    shape: list[int] = field(default_factory=lambda: [1, 28, 28], metadata={})  # channels, height, width
    train_size: int = setting(2048, whole(1))
    val_size: int = setting(256, whole(1))
    test_size: int = setting(512, whole(1))
    batch_size: int = setting(64, whole(1))
    test_batch_size: int = setting(512, whole(1))

    def loader_options(self, seed: int) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "shape": tuple(self.shape),
            "train": self.train_size,
            "val": self.val_size,
            "test": self.test_size,
            "seed": seed,
        }


def npz_path(value: Any, name: str) -> str:
    """The path of a user's `.npz` file (given: `???` is Hydra's mark for a value not given)."""
    if not isinstance(value, str) or not value or value == MISSING_VALUE:
        raise SparseLearningError(f"{name} must be the path of an .npz file (dataset.path=data.npz), got {value!r}")
    return value


@dataclass
class OwnDataConfig(DatasetConfig):
    """Settings of a user's own data (Arrays, Custom): the validation hold-out and the number of classes."""

    # null: the data's own validation split, else 0.1 of train held out; a number pools both and holds that out
    val_fraction: float | None = setting(None, number(0.0, inclusive=False, maximum=0.9))
    num_classes: int | None = setting(None, whole(2))  # null: the largest label + 1


@dataclass
class ArraysConfig(OwnDataConfig):
    """Arrays in an `.npz` file: train_x, train_y, test_x, test_y, optionally val_x, val_y (`data.arrays`)."""

    name: str = setting("Arrays")
    path: str = setting(MISSING_VALUE, npz_path)

    def loader_options(self, seed: int) -> dict[str, Any]:
        return {"path": self.path, "val_fraction": self.val_fraction, "num_classes": self.num_classes}


@dataclass
class CustomConfig(OwnDataConfig):
    """`_target_` callables returning a `torch.utils.data.Dataset` of (input, label) pairs (`data.custom`)."""

    name: str = setting("Custom")
    train: dict[str, Any] = field(
        default_factory=lambda: {"_target_": MISSING_VALUE}, metadata={"check": check_target_node, "label": ""}
    )
    val: dict[str, Any] | None = field(default=None, metadata={"check": check_target_node, "label": ""})
    test: dict[str, Any] = field(
        default_factory=lambda: {"_target_": MISSING_VALUE}, metadata={"check": check_target_node, "label": ""}
    )

    def loader_options(self, seed: int) -> dict[str, Any]:
        return {
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "val_fraction": self.val_fraction,
            "num_classes": self.num_classes,
        }


@dataclass
class ModelConfig:
    """A model of the registry, by name (`model._target_` builds any importable class instead)."""

    name: str = setting(MISSING_VALUE)


@dataclass
class VitConfig(ModelConfig):
    """ViT-tiny for 28x28 images (`sparselearning.models.vit`)."""

    name: str = setting("vit-tiny")
    patch_size: int = setting(7, whole(1))
    dim: int = setting(64, whole(1))
    depth: int = setting(4, whole(1))
    heads: int = setting(4, whole(1))
    mlp_ratio: int = setting(2, whole(1))


@dataclass
class WideResNetConfig(ModelConfig):
    name: str = setting("wrn-22-2")
    depth: int = setting(22, whole(1))
    widen_factor: int = setting(2, whole(1))
    dropout: float = setting(0.0, number(0.0, maximum=1.0))


@dataclass
class OptimizerConfig:
    """Settings of both optimizers: the run's length and the learning-rate schedule."""

    name: str = setting(MISSING_VALUE, choice(OPTIMIZERS))
    epochs: int = setting(15, whole(1))
    training_multiplier: int = setting(1, whole(1))  # 2 or 5 for RigL 2x / 5x: epochs and schedules stretch
    lr: float = setting(0.1, number(0.0, inclusive=False, maximum=MAX_LR))
    weight_decay: float = setting(0.0, number(0.0, maximum=1.0))
    label_smoothing: float = setting(0.0, number(0.0, maximum=1.0))
    decay_factor: float = setting(0.1, number(0.0))
    warmup_steps: int = setting(0, whole(0))  # linear warm-up from 0 over this many steps
    decay_frequency: int | None = setting(None, whole(1))  # steps between step decays (null: never)
    decay_bias_and_norm: bool = setting(False, boolean)  # false: no weight decay on biases and norms
    schedule: str = setting("step", choice(SCHEDULES))  # cosine: anneal to 0; step: x decay_factor


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = setting("SGD", choice(OPTIMIZERS))
    weight_decay: float = setting(5e-4, number(0.0, maximum=1.0))
    decay_frequency: int | None = setting(25000, whole(1))
    schedule: str = setting("cosine", choice(SCHEDULES))
    momentum: float = setting(0.9, number(0.0, maximum=1.0))
    nesterov: bool = setting(True, boolean)

    def check(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise SparseLearningError(
                "optimizer.nesterov=true needs optimizer.momentum > 0; set optimizer.nesterov=false for plain SGD"
            )


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = setting("Adam", choice(OPTIMIZERS))
    lr: float = setting(0.001, number(0.0, inclusive=False, maximum=MAX_LR))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata={"check": betas})
    eps: float = setting(1e-8, number(0.0, inclusive=False))


@dataclass
class MaskingConfig:
    """Every key a `masking` option may hold. Which keys an option holds, and their defaults, are the
    method table's (`method_table.cli_config`): a key an option leaves out stays null here."""

    name: str = setting(MISSING_VALUE)
    density: float | None = setting(None)  # checked by `check`: only where the method uses it
    sparse_init: str | None = setting(None, choice(init_registry))
    lottery_mask_path: str | None = setting(None)
    shuffle: bool | None = setting(None, boolean)
    growth_mode: str | None = setting(None, choice(grow_registry))
    prune_mode: str | None = setting(None, choice(prune_registry))
    redistribution_mode: str | None = setting(None, choice(redistribute_registry))
    dense_gradients: bool | None = setting(None, boolean)
    keep_grown_momentum: bool | None = setting(None, boolean)
    prune_rate: float | None = setting(None, fraction, label="(drop fraction)")
    decay_schedule: str | None = setting(None)  # checked by `check`: against the method's kind
    apply_when: str | None = setting(None, choice(APPLY_WHEN))
    interval: int | None = setting(None)  # checked by `check`: only where masks change
    start_when: int | None = setting(None, whole(0))
    end_when: int | None = setting(None, whole(0))
    low_memory: bool | None = setting(None, boolean)
    n: int | None = setting(None, whole(1))  # N:M methods: weights kept in every group of m inputs
    m: int | None = setting(None, whole(1))  # N:M methods: group size along each layer's fan-in
    sparse_refined_decay: float | None = setting(None, number(0.0), label="(SR-STE lambda_w)")
    # Optional keys (`+masking.include=[...]`): which weights are masked, and per-tensor densities.
    include: list[str] | None = field(default=None, metadata={"check": entries, "label": ""})
    exclude: list[str] | None = field(default=None, metadata={"check": entries, "label": ""})
    density_overrides: dict[str, float] | None = field(default=None, metadata={"check": overrides, "label": ""})
    # `+masking.sparse_compute=true|auto`: masked Linear layers compute with their active weights only (CPU).
    sparse_compute: Any = field(default=None, metadata={"check": sparse_compute_setting, "label": ""})

    @property
    def method(self) -> method_table.Method:
        return method_table.get(self.name, "masking")

    def check(self, raw: Mapping[str, Any]) -> None:
        """The checks that depend on the method (`raw`: the option's values as given)."""
        method = self.method
        if method.uses_density:
            check_density(raw.get("density"), "masking.density")  # type: ignore[arg-type]  # refuses None
        if method.kind == method_table.NM:
            n, m = check_n_m(raw.get("n"), raw.get("m"), "masking.")
            nm_density(n, m, raw.get("density"), "masking.")
        if method.from_saved_masks and raw.get("lottery_mask_path") in (None, MISSING_VALUE):
            raise SparseLearningError(
                f"masking={method.name} needs masking.lottery_mask_path: a finished run's directory or "
                "checkpoints/last.pt"
            )

    def check_after_fields(self, raw: Mapping[str, Any]) -> None:
        method = self.method
        method_table.check_combination(
            method, decay_schedule=raw.get("decay_schedule"), growth_mode=raw.get("growth_mode"), prefix="masking."
        )
        if method.masks_change:
            check_positive_int(raw.get("interval"), "masking.interval (update interval)")  # type: ignore[arg-type]


@dataclass
class Config:
    """The top-level settings of a run (the groups are checked and typed by their own dataclasses)."""

    exp_name: str | None = setting("${masking.name}")
    log_interval: int = setting(100, whole(1))  # steps between lines of metrics.jsonl
    val_interval: int = setting(1, whole(1))  # epochs between validation passes
    distributed_timeout_s: float = setting(300, number(1.0))  # under torchrun: a lost rank ends the job
    resume: bool = setting(True, boolean)  # the same command in the same run directory resumes it
    progress: bool = setting(True, boolean)  # tqdm progress bar
    plots: bool = setting(True, boolean)  # training curves and per-layer densities under plots/
    verify_sync: bool = setting(False, boolean)  # under DDP: checksum the masks at every update
    device: str = setting("auto", choice(DEVICES))  # auto: cuda when available
    mixed_precision: bool | str = setting(False, mixed_precision)  # bfloat16 on CPU, float16 on CUDA
    channels_last: bool | str = setting("auto", auto_or_boolean)  # conv nets on CPU: channels_last
    seed: int = setting(0, seed)


GROUPS = ("dataset", "model", "optimizer", "masking")


@dataclass
class RunConfig(Config):
    """A whole checked configuration, typed: what the training code reads."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig | None = None  # None: a `model._target_` model (its keys are the class's own)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)


# The options of each group: their defaults (what the YAML file of the same name must hold).
DATASETS: dict[str, DatasetConfig] = {
    "MNIST": SplitDatasetConfig(name="MNIST"),
    "FashionMNIST": SplitDatasetConfig(name="FashionMNIST"),
    "CIFAR10": CifarConfig(name="CIFAR10", root="data/cifar10"),
    "CIFAR100": CifarConfig(name="CIFAR100", root="data/cifar100"),
    "Synthetic": SyntheticConfig(),
    "Arrays": ArraysConfig(),
    "Custom": CustomConfig(),
}
MODELS: dict[str, ModelConfig] = {
    "lenet300-100": ModelConfig(name="lenet300-100"),
    "lenet5": ModelConfig(name="lenet5"),
    "resnet50": ModelConfig(name="resnet50"),
    "wrn-22-2": WideResNetConfig(),
    "vit-tiny": VitConfig(),
}
OPTIMIZER_OPTIONS: dict[str, OptimizerConfig] = {"SGD": SGDConfig(), "Adam": AdamConfig()}
OPTIONS: dict[str, dict[str, Any]] = {"dataset": DATASETS, "model": MODELS, "optimizer": OPTIMIZER_OPTIONS}
# Model names of the registry without an option of their own: typed as a plain model.
_MODEL_CLASSES: dict[str, type[ModelConfig]] = {"wrn-22-2": WideResNetConfig, "vit-tiny": VitConfig}


def option_defaults(group: str, name: str) -> dict[str, Any]:
    """The content the YAML file `conf/<group>/<name>.yaml` must have (its defaults)."""
    if group == "masking":
        return method_table.cli_config(method_table.get(name, "masking"))
    return _as_written(OPTIONS[group][name])


def _as_written(schema: Any) -> dict[str, Any]:
    """A dataclass's defaults as a YAML file holds them (interpolations unresolved)."""
    content = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)
    assert isinstance(content, dict)
    return {str(key): value for key, value in content.items()}


def top_level_defaults() -> dict[str, Any]:
    """The top-level keys `conf/config.yaml` must set, with their values."""
    return _as_written(Config)


def register() -> None:
    """Store every dataclass in Hydra's ConfigStore (`schema/<group>/<option>`, `schema/config`), so a user's
    own config file can name one as its base in a defaults list."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=Config)
    for group, options in (("dataset", DATASETS), ("model", MODELS), ("optimizer", OPTIMIZER_OPTIONS)):
        for name, instance in options.items():
            store.store(group=f"schema/{group}", name=name, node=instance)
    store.store(group="schema/masking", name="masking", node=MaskingConfig)


# ---------------------------------------------------------------------------------------------- typing


def _optional(annotation: Any) -> bool:
    return type(None) in get_args(annotation)  # `X | None` (and `Optional[X]`)


def _plain(node: Any) -> dict[str, Any]:
    """A node as plain data; `???` (a value not given) stays the text `???`."""
    content = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    assert isinstance(content, dict)
    return {str(key): value for key, value in content.items()}


def _fields_check(cls: type, values: Mapping[str, Any], prefix: str, owner: str) -> None:
    """Refuse unknown keys, then run every field's check on the value given."""
    known = {f.name: f for f in fields(cls)}
    unknown = [key for key in values if key not in known]
    if unknown:
        key = unknown[0]
        raise SparseLearningError(
            f"unknown setting {prefix}{key}={values[key]!r} for {owner}; allowed: {', '.join(sorted(known))}"
        )
    hints = get_type_hints(cls)
    for name, spec in known.items():
        if name not in values:
            continue
        value = values[name]
        check = spec.metadata.get("check")
        if check is None or (value is None and _optional(hints[name])):
            continue
        label = f"{prefix}{name}" + (f" {spec.metadata['label']}" if spec.metadata.get("label") else "")
        check(value, label)


def _type_text(hint: Any) -> str:
    """`str | None` -> `str or null`; `list[int]` stays as it is."""
    if hint is None:
        return "of the key's type"
    if get_origin(hint) in (Union, UnionType):
        return " or ".join("null" if arg is type(None) else _type_text(arg) for arg in get_args(hint))
    return hint.__name__ if isinstance(hint, type) and not get_args(hint) else str(hint)


def _structured(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    """`values` merged into the structured schema of `cls`: an instance of `cls`, every value of its type."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), dict(values))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = f"{prefix}{error.full_key or error.key or ''}"
        expected = get_type_hints(cls).get(str(error.key))
        raise SparseLearningError(f"{key} must be {_type_text(expected)}, got {error.value!r}") from None


def _typed_group(cls: type, values: Mapping[str, Any], prefix: str, owner: str) -> Any:
    _fields_check(cls, values, prefix, owner)
    return _structured(cls, values, prefix)


def _dataset(values: Mapping[str, Any]) -> DatasetConfig:
    name = check_choice("dataset", values.get("name"), DATASETS)
    result = _typed_group(type(DATASETS[name]), values, "dataset.", f"dataset={name}")
    assert isinstance(result, DatasetConfig)
    return result


def _model(values: Mapping[str, Any]) -> ModelConfig | None:
    if "_target_" in values:
        return None
    name = values.get("name")
    cls = _MODEL_CLASSES.get(str(name), ModelConfig)
    result = _typed_group(cls, values, "model.", f"model={name}")
    assert isinstance(result, ModelConfig)
    return result


def _optimizer(values: Mapping[str, Any]) -> OptimizerConfig:
    name = check_choice("optimizer", values.get("name"), OPTIMIZERS)
    cls = type(OPTIMIZER_OPTIONS[name])
    result = _typed_group(cls, values, "optimizer.", f"optimizer={name}")
    assert isinstance(result, OptimizerConfig)
    if isinstance(result, SGDConfig):
        result.check()
    return result


def _masking(values: Mapping[str, Any]) -> MaskingConfig:
    method = method_table.get(values.get("name"), "masking")  # type: ignore[arg-type]
    shell = MaskingConfig(name=method.name)
    shell.check(values)
    _fields_check(MaskingConfig, values, "masking.", f"masking={method.name}")
    shell.check_after_fields(values)
    given = {key: value for key, value in values.items() if value != MISSING_VALUE}
    result = _structured(MaskingConfig, given, "masking.")
    assert isinstance(result, MaskingConfig)
    return result


# Keys a group accepts that no option file lists: given with a leading `+`.
OPTIONAL_KEYS = ("masking.include", "masking.exclude", "masking.density_overrides", "masking.sparse_compute")


def masking_settings(values: DictConfig | Mapping[str, Any]) -> MaskingConfig:
    """The checked, typed form of a `masking` node that may leave keys out: absent keys take the method
    table's command-line defaults (`method_table.cli_config`), as if the option's YAML file had been composed."""
    given = _plain(values)
    method = method_table.get(given.get("name"), "masking")  # type: ignore[arg-type]
    return _masking({**method_table.cli_config(method), **given})


def typed(cfg: DictConfig | Mapping[str, Any]) -> RunConfig:
    """The checked, typed form of a composed configuration; refuses a bad one in one line
    (`SparseLearningError`), masking first, then the optimizer, the dataset and the top-level keys."""
    masking = _masking(_plain(cfg["masking"]))
    optimizer = _optimizer(_plain(cfg["optimizer"]))
    dataset = _dataset(_plain(cfg["dataset"]))
    model = _model(_plain(cfg["model"]))
    top = {str(key): cfg[str(key)] for key in cfg if key not in GROUPS and key != "hydra"}  # resolved values
    _fields_check(Config, top, "", "the top level")
    scalars = _structured(Config, top, "")
    values = {f.name: getattr(scalars, f.name) for f in fields(Config)}
    return RunConfig(**values, dataset=dataset, model=model, optimizer=optimizer, masking=masking)
