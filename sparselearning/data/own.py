"""A user's own data, from arrays or from a `Dataset`, checked and made into what every loader here produces.

Both routes (`arrays`: an `.npz` file; `custom`: a `_target_` returning a `torch.utils.data.Dataset`) end in
`own_dataset`, which takes the training and test inputs and labels (validation optional) and returns the usual
`{train,val,test}_{images,labels}` tensors with a `DatasetInfo`:

- Inputs are uint8 pixels, (N, H, W) (one channel) or (N, C, H, W), normalised as images are (divided by 255,
  then per-channel mean and std); or floating point, (N, F) (seen as (N, 1, 1, F), so `lenet300-100` flattens it
  back) or (N, C, H, W), held as float32, finite, and normalised by their own mean and std. Every split has the
  same kind and per-example shape.
- Labels are integers in 0..num_classes-1, one per input; `num_classes` is given, or the largest label plus 1.
- Without validation inputs, `DEFAULT_VAL_FRACTION` of the training examples (the last ones, in their order) is
  held out for validation; with `val_fraction`, training and validation examples are pooled and that fraction
  is held out, as `dataset.val_fraction` does for MNIST (`split.resplit`).
- Mean and std are measured per channel on the training split the run trains on (after the hold-out).
- The fingerprint is the sha256 of the checked tensors (each split's kind, shape and bytes, before the
  hold-out): a path or a function name does not say which data it gave, so the run records this instead, and
  a run directory made with other data is refused.
"""

from __future__ import annotations

import hashlib

import torch

from sparselearning.data.info import DatasetInfo, channel_stats
from sparselearning.data.split import resplit
from sparselearning.errors import SparseLearningError

DEFAULT_VAL_FRACTION = 0.1
SPLITS = ("train", "val", "test")
MAX_CLASSES = 1 << 20
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
ALLOWED_INPUTS = "uint8 pixels (N, H, W) or (N, C, H, W), or floating point (N, F) or (N, C, H, W)"


def shaped_inputs(inputs: torch.Tensor, where: str) -> torch.Tensor:
    """`inputs` as (N, C, H, W): uint8 kept, floating point as finite float32; anything else refused."""
    if inputs.dtype == torch.uint8 and inputs.dim() in (3, 4):
        return inputs.unsqueeze(1) if inputs.dim() == 3 else inputs
    if inputs.is_floating_point() and inputs.dim() in (2, 4):
        values = inputs.to(torch.float32)
        if not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).sum())
            raise SparseLearningError(
                f"{where} holds {bad} NaN or infinite values (as float32); inputs must be finite numbers"
            )
        return values.reshape(len(values), 1, 1, -1) if values.dim() == 2 else values
    raise SparseLearningError(f"{where} is {inputs.dtype} of shape {list(inputs.shape)}; allowed: {ALLOWED_INPUTS}")


def checked_labels(labels: torch.Tensor, count: int, where: str) -> torch.Tensor:
    """`labels` as int64 (N,): whole numbers >= 0, one per input."""
    if labels.dtype not in _INT_DTYPES or labels.dim() != 1:
        raise SparseLearningError(
            f"{where} is {labels.dtype} of shape {list(labels.shape)}; labels must be one whole number per input "
            "(a 1-D integer array)"
        )
    if len(labels) != count:
        raise SparseLearningError(f"{where} holds {len(labels)} labels for {count} inputs; give one label per input")
    result = labels.to(torch.int64)
    if len(result) and int(result.min()) < 0:
        raise SparseLearningError(f"{where} holds the label {int(result.min())}; labels are 0, 1, ... num_classes-1")
    return result


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """`sha256:<hex>` of the tensors: each key, dtype and shape, then its bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{list(tensor.shape)};".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)  # the buffer itself, not a copy
    return f"sha256:{digest.hexdigest()}"


def float_channel_stats(inputs: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of float inputs (N, C, H, W); a constant channel gets std 1."""
    values = inputs.transpose(0, 1).reshape(inputs.shape[1], -1).double()
    std = values.std(dim=1, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(values.mean(dim=1).tolist()), tuple(std.tolist())


def _num_classes(labels: list[torch.Tensor], given: int | None, origin: str) -> int:
    largest = max(int(split.max()) for split in labels if len(split))
    if given is None:
        if largest + 1 < 2:
            raise SparseLearningError(f"{origin}: every label is 0; a classifier needs at least 2 classes")
        return largest + 1
    if isinstance(given, bool) or not isinstance(given, int) or not 2 <= given <= MAX_CLASSES:
        raise SparseLearningError(f"dataset.num_classes must be a whole number in [2, {MAX_CLASSES}], got {given!r}")
    if largest >= given:
        raise SparseLearningError(
            f"{origin} holds the label {largest}, but dataset.num_classes={given}; labels are 0..{given - 1}"
        )
    return given


def own_dataset(
    name: str,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor] | None],
    origin: str,
    val_fraction: float | None = None,
    num_classes: int | None = None,
) -> tuple[dict[str, torch.Tensor], DatasetInfo]:
    """`(tensors, info)` of a user's dataset (see the module docstring).

    :param splits: `{"train": (inputs, labels), "test": (...), "val": (...) or None}`, labels as tensors
    :param origin: where the data came from, for messages (the file, or the `_target_`)
    """
    checked: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        given = splits.get(split)
        if given is None:
            if split != "val":
                raise SparseLearningError(f"{origin} has no {split} split")
            continue
        inputs = shaped_inputs(given[0], f"the {split} inputs of {origin}")
        if len(inputs) == 0:
            raise SparseLearningError(f"the {split} split of {origin} is empty; every split needs an example")
        checked[f"{split}_images"] = inputs
        checked[f"{split}_labels"] = checked_labels(given[1], len(inputs), f"the {split} labels of {origin}")
    first = checked["train_images"]
    for key in ("val_images", "test_images"):
        other = checked.get(key)
        if other is not None and (other.dtype != first.dtype or other.shape[1:] != first.shape[1:]):
            raise SparseLearningError(
                f"the {key[:-7]} inputs of {origin} are {other.dtype} {list(other.shape[1:])} per example, the train "
                f"inputs {first.dtype} {list(first.shape[1:])}; every split must have the same kind and shape"
            )
    classes = _num_classes([value for key, value in checked.items() if key.endswith("_labels")], num_classes, origin)
    digest = fingerprint(checked)
    tensors = dict(checked)
    if "val_images" not in tensors:
        tensors["val_images"] = first[:0]
        tensors["val_labels"] = tensors["train_labels"][:0]
        val_fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    if val_fraction is not None:
        tensors = resplit(tensors, val_fraction)
    train = tensors["train_images"]
    pixels = train.dtype == torch.uint8
    mean, std = channel_stats(train) if pixels else float_channel_stats(train)
    shape = (int(train.shape[1]), int(train.shape[2]), int(train.shape[3]))
    info = DatasetInfo(
        name, classes, shape, mean, std, augment=False, input_kind="uint8" if pixels else "float", fingerprint=digest
    )
    return tensors, info
