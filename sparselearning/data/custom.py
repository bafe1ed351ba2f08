"""`dataset=Custom dataset.train._target_=pkg.mod.fn dataset.test._target_=...`: a user's own `Dataset`.

Each of `dataset.train`, `dataset.test` and the optional `dataset.val` is a node whose `_target_` names a
callable returning a `torch.utils.data.Dataset` (anything with `len()` and indexing) of `(input, label)` pairs;
the node's other keys are its keyword arguments. It is called with `hydra.utils.instantiate`, without recursion:
a `_target_` inside the arguments, or Hydra's other special keys (`_args_`, `_partial_`, ...), are refused by
`check_target_node`, so the only code a configuration names is these three callables.

These targets come from the command line of `sparselearning train`, which runs the user's own code anyway. A
configuration read back from a file (a run's `config.yaml`, a checkpoint) never reaches this module: `export`
and `report` use only what the run recorded (shape, classes, normalisation, fingerprint), never the target.

Every item is read once and stacked into tensors (inputs: tensors or numpy arrays, all of one shape and
dtype; labels: whole numbers), so training runs on the same in-memory pipeline as every other dataset; what
inputs and labels may be is `own`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sparselearning.data.info import DatasetInfo
from sparselearning.data.own import own_dataset
from sparselearning.errors import SparseLearningError

TARGET = "_target_"
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _nested_target(value: Any, where: str) -> str | None:
    """The first key starting with `_` at any depth below `value` (Hydra would treat it as code or a flag)."""
    pending = [(where, value)]
    while pending:
        place, item = pending.pop()
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if str(key).startswith("_"):
                    return f"{place}.{key}"
                pending.append((f"{place}.{key}", sub))
        elif isinstance(item, (list, tuple)):
            pending.extend((f"{place}[{index}]", sub) for index, sub in enumerate(item))
    return None


def check_target_node(value: Any, name: str) -> dict[str, Any]:
    """A node `{_target_: "pkg.module.function", keyword: value, ...}`: the target a dotted name, no other key
    starting with `_` at any depth (the only callable a dataset node may name is its own `_target_`)."""
    if not isinstance(value, Mapping):
        raise SparseLearningError(f"{name} must be a node with a _target_ (set {name}._target_=pkg.module.function)")
    target = value.get(TARGET)
    if not isinstance(target, str) or not _DOTTED.match(target):
        raise SparseLearningError(
            f"{name}._target_ must name a callable returning a torch Dataset, such as my_pkg.data.train_set; "
            f"got {target!r}"
        )
    for key, item in value.items():
        inner = f"{name}.{key}"
        if key != TARGET and str(key).startswith("_"):
            raise SparseLearningError(f"{inner} is refused: a dataset node takes only _target_ and keyword arguments")
        found = _nested_target(item, inner) if key != TARGET else None
        if found is not None:
            raise SparseLearningError(
                f"{found} is refused: only {name}._target_ may name code; its arguments are plain values"
            )
    return {str(key): item for key, item in value.items()}


def _dataset(node: Mapping[str, Any], name: str) -> Any:
    """The object the node's target returns (checked to have `len()` and indexing)."""
    import hydra.utils  # here: only a Custom dataset needs Hydra's instantiate

    spec = check_target_node(node, name)
    try:
        dataset = hydra.utils.instantiate({**spec, "_recursive_": False, "_convert_": "all"})
    except Exception as error:
        reason = " ".join(str(error).split())
        raise SparseLearningError(f"cannot build {name}._target_={spec[TARGET]}: {reason}") from None
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise SparseLearningError(
            f"{name}._target_={spec[TARGET]} returned a {type(dataset).__name__}, not a Dataset with len() and indexing"
        )
    return dataset


def _label(value: Any, where: str) -> int:
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        raise SparseLearningError(f"{where} is {type(value).__name__} {value!r}; labels must be whole numbers")
    return value


def materialise(dataset: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every `(input, label)` item of `dataset`, stacked: inputs (N, ...) and int64 labels (N,)."""
    try:
        count = len(dataset)
    except Exception as error:
        raise SparseLearningError(f"{name}: len() of the dataset failed: {' '.join(str(error).split())}") from None
    inputs: list[torch.Tensor] = []
    labels: list[int] = []
    for index in range(count):
        where = f"{name} item {index}"
        try:
            item = dataset[index]
        except Exception as error:
            raise SparseLearningError(f"{where}: reading it failed: {' '.join(str(error).split())}") from None
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SparseLearningError(f"{where} is a {type(item).__name__}; items must be (input, label) pairs")
        value = item[0]
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise SparseLearningError(f"{where}: the input is a {type(value).__name__}; give a tensor or numpy array")
        tensor = torch.as_tensor(value).detach().cpu()
        if inputs and (tensor.dtype != inputs[0].dtype or tensor.shape != inputs[0].shape):
            raise SparseLearningError(
                f"{where}: the input is {tensor.dtype} {list(tensor.shape)}, item 0's {inputs[0].dtype} "
                f"{list(inputs[0].shape)}; every input must have one shape and dtype"
            )
        inputs.append(tensor)
        labels.append(_label(item[1], f"{where}: the label"))
    if not inputs:
        raise SparseLearningError(f"{name} returned an empty dataset; every split needs an example")
    return torch.stack(inputs), torch.tensor(labels, dtype=torch.int64)


def load_custom(
    train: Mapping[str, Any] | None,
    test: Mapping[str, Any] | None,
    val: Mapping[str, Any] | None = None,
    val_fraction: float | None = None,
    num_classes: int | None = None,
) -> tuple[dict[str, torch.Tensor], DatasetInfo]:
    """`(tensors, info)` from the datasets the three nodes' targets return (see the module docstring)."""
    splits: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}
    targets = []
    for split, node in (("train", train), ("val", val), ("test", test)):
        if node is None and split == "val":
            continue
        name = f"dataset.{split}"
        splits[split] = materialise(_dataset(check_target_node(node, name), name), name)
        targets.append(str(node[TARGET]))  # type: ignore[index]
    origin = f"the Custom dataset ({', '.join(targets)})"
    return own_dataset("Custom", splits, origin, val_fraction=val_fraction, num_classes=num_classes)
