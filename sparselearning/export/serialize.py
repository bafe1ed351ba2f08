"""Saving and loading exported sparse models: one weights-only file holding only the active weights.

The file is a plain dict that `torch.load(path, weights_only=True)` reads without running any code::

    {"format": "sparselearning-sparse-v1",
     "model": {"name": "lenet5", "kwargs": {...}} or None,    # how to build the architecture
     "layers": {module_path: {"kind": ..., tensors and hyper-parameters}},
     "tensors": {key: {"crow_indices", "col_indices", "values", "shape"}},  # state entries stored compressed
     "ties": {key: [other names of the same Parameter]},
     "state": {key: tensor},                                   # every other entry of the state dict
     "preprocessing": {"input_kind", "input_shape", "mean", "std"} or None}  # see `preprocessing`

`kind` is "condensed_linear" (a `CondensedLinear`: its (out, k) `weight`, the (out, k) `indices` table of the
inputs each neuron reads, the dense `shape` [out, in] and the bias), "csr_linear" or "csr_conv" (a
`SparseLinear` / `SparseConv2d`: `crow_indices`, `col_indices`,
`values`, the weight's `shape` and the bias), "bias_only" (a layer with no active weight), "csr_attention"
(an `nn.MultiheadAttention` computed by a `SparseMultiheadAttention`) or "csr_recurrent" (an `nn.LSTM`, `nn.GRU`
or `nn.RNN` computed by a `SparseRecurrent`). The last two hold no tensors: the layer's weights are ordinary
state entries (stored compressed), so the loader checks them as such and converts the layer after loading. Files
written before attention and tied weights were exported may hold "dense" layer entries instead of "tensors"
(a Linear/conv weight stored compressed); the loader still reads them.

`tensors` holds every floating-point state entry of 2+ dims whose CSR form (of the tensor viewed as rows by
the rest) is smaller: masked weights of any kind (attention projections, recurrent matrices, embedding tables,
layers that compute densely because that was faster) are stored at the size of their active weights. A tied
weight (one Parameter under several names) is stored once, under its first name, and `ties` lists its other
names, so a tied model's file is not larger than an untied one.

Saving the architecture itself would need pickled code, so the file names it instead: `model` is a key of
`sparselearning.models.registry` or a class exported by `sparselearning.models`, with its keyword arguments.
Models built elsewhere are saved with `model=None` and loaded into a freshly built instance you pass in.
Reading a file back, and every check that makes reading a hostile one safe, is `loader.load_sparse`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparselearning import models
from sparselearning.core import unwrap_model
from sparselearning.errors import SparseLearningError, first_line
from sparselearning.export.layers import (
    BiasOnly,
    CondensedLinear,
    SparseConv2d,
    SparseLinear,
    SparseMultiheadAttention,
    SparseRecurrent,
    compress,
)
from sparselearning.export.output import check_writable
from sparselearning.export.preprocessing import Preprocessing
from sparselearning.io import atomic_save

FORMAT = "sparselearning-sparse-v1"
_PLAIN = (str, int, float, bool, type(None))


def model_constructor(name: str) -> Any:
    """The callable a spec's `name` refers to: a registry key, else a class exported by `sparselearning.models`."""
    if name in models.registry:
        return models.registry[name]
    if name in models.__all__ and name != "registry":
        return getattr(models, name)
    allowed = [*models.registry, *(n for n in models.__all__ if n != "registry")]
    raise SparseLearningError(f"unknown model {name!r} in the sparse model file; allowed: {', '.join(allowed)}")


def check_plain_data(value: Any, where: str) -> None:
    """Raise unless `value` is plain data: numbers, strings, None, and lists or string-keyed dicts of them.

    Each container is visited once, so data with shared or self-referencing parts is checked in linear time.
    """
    seen: set[int] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _PLAIN) or id(item) in seen:
            continue
        if isinstance(item, (list, tuple)):
            seen.add(id(item))
            pending.extend(item)
        elif isinstance(item, dict) and all(isinstance(key, str) for key in item):
            seen.add(id(item))
            pending.extend(item.values())
        else:
            kind = "a dict with a non-string key" if isinstance(item, dict) else type(item).__name__
            raise SparseLearningError(f"{where} must hold only numbers, strings, lists and dicts, found {kind}")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate a model spec `{"name": str, "kwargs": dict}` (None is allowed: no spec)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise SparseLearningError("a model spec is a dict with a 'name' string and a 'kwargs' dict")
    kwargs = spec.get("kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise SparseLearningError(f"the model spec's 'kwargs' must be a dict, got {type(kwargs).__name__}")
    kwargs = dict(kwargs)
    check_plain_data(kwargs, "model spec kwargs")
    model_constructor(spec["name"])
    return {"name": spec["name"], "kwargs": kwargs}


@contextlib.contextmanager
def _module_budget(limit: int | None, name: str) -> Iterator[None]:
    """Refuse, while the block runs, a model that registers more than `limit` submodules."""
    if limit is None:
        yield
        return
    count = 0

    def counted(_parent: nn.Module, _name: str, submodule: nn.Module | None) -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise SparseLearningError(
                f"model {name!r} as the spec describes it has more than {limit} modules, more than the file "
                "could hold weights for; the spec is damaged"
            )

    handle = torch.nn.modules.module.register_module_module_registration_hook(counted)
    try:
        yield
    finally:
        handle.remove()


def build_model(
    spec: Mapping[str, Any], *, device: str | torch.device | None = None, max_modules: int | None = None
) -> nn.Module:
    """A fresh dense model from a spec.

    :param device: where to build it; "meta" builds the architecture without allocating its weights, which
        lets a spec read from a file be checked against the tensors the file holds before anything is allocated
    :param max_modules: refuse a spec whose model registers more submodules than this
    """
    checked = check_spec(spec)
    assert checked is not None
    name, kwargs = checked["name"], checked["kwargs"]
    placement = torch.device(device) if device is not None else contextlib.nullcontext()
    try:
        with _module_budget(max_modules, name), placement:
            model = model_constructor(name)(**kwargs)
    except SparseLearningError:
        raise
    except Exception as error:  # the constructor's own complaint about arguments read from a file
        reason = first_line(error, limit=None)
        raise SparseLearningError(f"cannot build model {name!r} with {_short(kwargs)}: {_short(reason, 200)}") from None
    if not isinstance(model, nn.Module):
        raise SparseLearningError(f"model {name!r} did not build an nn.Module")
    return model


def _bias(module: nn.Module) -> torch.Tensor | None:
    bias = getattr(module, "bias", None)
    return None if bias is None else bias.detach().cpu().clone()


def _is_semi_structured(tensor: torch.Tensor) -> bool:
    kind = getattr(torch.sparse, "SparseSemiStructuredTensor", None)
    return kind is not None and isinstance(tensor, kind)


#: The layers stored as the dense layer they compute (with a marker of this kind), converted again on load.
CONVERTED_KINDS: dict[type[nn.Module], str] = {
    SparseMultiheadAttention: "csr_attention",
    SparseRecurrent: "csr_recurrent",
}


def layer_entry(module: nn.Module) -> dict[str, Any] | None:
    """The file entry of a layer the loader must rebuild, or None for a module saved through the state dict."""
    if isinstance(module, SparseLinear):
        return {
            "kind": "csr_linear",
            "crow_indices": module.crow_indices.cpu(),
            "col_indices": module.col_indices.cpu(),
            "values": module.values.cpu(),
            "shape": [module.out_features, module.in_features],
            "bias": _bias(module),
        }
    if isinstance(module, CondensedLinear):
        return {
            "kind": "condensed_linear",
            "weight": module.weight.cpu(),
            "indices": module.indices.cpu(),
            "shape": [module.out_features, module.in_features],
            "bias": _bias(module),
        }
    if isinstance(module, SparseConv2d):
        return {
            "kind": "csr_conv",
            "crow_indices": module.crow_indices.cpu(),
            "col_indices": module.col_indices.cpu(),
            "values": module.values.cpu(),
            "shape": [module.out_channels, module.in_channels, *module.kernel_size],
            "stride": list(module.stride),
            "padding": list(module.padding),
            "dilation": list(module.dilation),
            "bias": _bias(module),
        }
    if isinstance(module, BiasOnly):
        return {
            "kind": "bias_only",
            "layer": module.kind,
            "out_features": module.out_features,
            "in_features": module.in_features,
            "kernel_size": list(module.kernel_size),
            "stride": list(module.stride),
            "padding": module.padding if isinstance(module.padding, str) else list(module.padding),
            "dilation": list(module.dilation),
            "bias": _bias(module),
        }
    return None


def compressed_if_smaller(tensor: torch.Tensor) -> dict[str, Any] | None:
    """A floating-point tensor of 2+ dims with enough zeros as CSR components of its (rows, rest) matrix
    (expanded again on load), else None."""
    if tensor.dim() < 2 or not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    nonzero = int(tensor.count_nonzero())
    index_bytes = 4 if tensor.numel() < 2**31 - 1 else 8
    compressed = nonzero * (tensor.element_size() + index_bytes) + (tensor.shape[0] + 1) * index_bytes
    if compressed >= tensor.numel() * tensor.element_size():
        return None
    crow, col, values = compress(tensor.detach().reshape(tensor.shape[0], -1).cpu())
    return {"crow_indices": crow, "col_indices": col, "values": values, "shape": list(tensor.shape)}


def owned_by(key: str, path: str) -> bool:
    """Whether state-dict `key` belongs to the module at `path` (the root owns every key)."""
    return not path or key.startswith(f"{path}.")


def tied_names(model: nn.Module) -> list[list[str]]:
    """Every group of names under which the model holds one Parameter (more than one name), in model order."""
    groups: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def sparse_payload(
    model: nn.Module, spec: Mapping[str, Any] | None = None, preprocessing: Preprocessing | None = None
) -> dict[str, Any]:
    """The dict `save_sparse` writes (see the module docstring for its layout)."""
    model = unwrap_model(model)
    checked = check_spec(spec)
    if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
        raise SparseLearningError(
            f"preprocessing must be a sparselearning.export.Preprocessing or None, got {type(preprocessing).__name__}"
        )
    layers: dict[str, dict[str, Any]] = {}
    converted = [path for path, m in model.named_modules() if type(m) in CONVERTED_KINDS]
    for path, module in model.named_modules():
        if any(owned_by(path, above) and path != above for above in converted):
            continue  # a sparse attention's or recurrent layer's own matrices: it is stored as a whole below
        if any(_is_semi_structured(p) for p in module.parameters(recurse=False)):
            raise SparseLearningError(
                f"layer {path!r} holds a 2:4 semi-structured weight, a GPU runtime format that is not saved; "
                "save the model exported without semi_structured=True"
            )
        entry = layer_entry(module)
        if entry is not None:
            layers[path] = entry
    state = {
        key: value.detach().cpu()
        for key, value in model.state_dict().items()
        if not any(owned_by(key, path) for path in [*layers, *converted])
    }
    # A sparse attention or recurrent layer is stored as the dense layer it replaces (its weights compressed below).
    for path in converted:
        module = model.get_submodule(path)
        assert isinstance(module, (SparseMultiheadAttention, SparseRecurrent))
        layers[path] = {"kind": CONVERTED_KINDS[type(module)]}
        prefix = f"{path}." if path else ""
        state.update({prefix + key: value.detach().cpu() for key, value in module.dense_state().items()})
    # A tied weight is stored once, under its first name; the others are listed so the loader ties them again.
    ties: dict[str, list[str]] = {}
    for names in tied_names(model):
        present = [name for name in names if name in state]
        if len(present) > 1:
            ties[present[0]] = present[1:]
            for name in present[1:]:
                del state[name]
    tensors: dict[str, dict[str, Any]] = {}
    for key in list(state):
        entry = compressed_if_smaller(state[key])
        if entry is not None:
            tensors[key] = entry
            del state[key]
    return {
        "format": FORMAT,
        "model": checked,
        "layers": layers,
        "tensors": tensors,
        "ties": ties,
        "state": state,
        "preprocessing": None if preprocessing is None else preprocessing.record(),
        "torch_version": str(torch.__version__),
    }


def serialized_size(obj: Any) -> int:
    """Bytes `torch.save` writes for `obj`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def save_sparse(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    spec: Mapping[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
) -> int:
    """Write an exported model (from `to_sparse`) to `path`, atomically; returns the file's size in bytes.

    :param spec: how to rebuild the architecture, `{"name": registry key or sparselearning.models class,
        "kwargs": {...}}`; without it, `load_sparse` needs a freshly built model passed in
    :param preprocessing: the input preprocessing the model expects, stored so that the loaded model's
        `preprocessing` turns raw inputs into what it was trained on; None stores none
    """
    target = check_writable(path)
    payload = sparse_payload(model, spec, preprocessing)
    try:
        atomic_save(payload, target)
    except OSError as error:
        raise SparseLearningError(f"cannot write {target}: {error.strerror or error}") from None
    return target.stat().st_size


@dataclass(frozen=True)
class ExportReport:
    """Sizes of the dense checkpoint (state dict alone) and of the sparse file, and the largest output change."""

    dense_bytes: int
    sparse_bytes: int
    max_abs_diff: float | None = None

    @property
    def ratio(self) -> float:
        """Sparse file size over dense state-dict size."""
        return self.sparse_bytes / max(1, self.dense_bytes)


def export_report(
    dense_model: nn.Module,
    sparse_model: nn.Module,
    *,
    inputs: torch.Tensor | None = None,
    sparse_path: str | os.PathLike[str] | None = None,
    spec: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Compare an exported model with the masked model it came from.

    :param dense_model: the masked model; `dense_bytes` is what `torch.save(dense_model.state_dict())` writes
    :param sparse_model: the exported model; `sparse_bytes` is the size of `sparse_path` if given, else what
        `save_sparse` would write (with `spec`)
    :param inputs: if given, both models run on it in eval mode (their training flags are restored) and
        `max_abs_diff` is the largest absolute difference of their outputs
    """
    dense_model = unwrap_model(dense_model)
    dense_bytes = serialized_size(dense_model.state_dict())
    if sparse_path is not None:
        sparse_bytes = Path(sparse_path).stat().st_size
    else:
        sparse_bytes = serialized_size(sparse_payload(sparse_model, spec))
    difference = None
    if inputs is not None:
        outputs = []
        for net in (dense_model, sparse_model):
            was_training = net.training
            net.eval()
            try:
                with torch.no_grad():
                    outputs.append(net(inputs).float())
            finally:
                net.train(was_training)
        difference = float((outputs[0] - outputs[1].to(outputs[0].device)).abs().max())
    return ExportReport(dense_bytes, sparse_bytes, difference)
