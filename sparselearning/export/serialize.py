"""Saving and loading exported sparse models: one weights-only file holding only the active weights.

The file is a plain dict that `torch.load(path, weights_only=True)` reads without running any code::

    {"format": "sparselearning-sparse-v1",
     "model": {"name": "lenet5", "kwargs": {...}} or None,    # how to build the architecture
     "layers": {module_path: {"kind": ..., tensors and hyper-parameters}},
     "state": {key: tensor}}                                   # every other entry of the state dict

`kind` is "csr_linear" or "csr_conv" (a `SparseLinear` / `SparseConv2d`: `crow_indices`, `col_indices`,
`values`, the weight's `shape` and the bias), "bias_only" (a layer with no active weight), or "dense" (a
dense Linear/conv weight that is stored compressed because that is smaller, and expanded again on load).

Saving the architecture itself would need pickled code, so the file names it instead: `model` is a key of
`sparselearning.models.registry` or a class exported by `sparselearning.models`, with its keyword arguments.
Models built elsewhere are saved with `model=None` and loaded into a freshly built instance you pass in.
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparselearning import models
from sparselearning.core import MASKABLE_TYPES, unwrap_model
from sparselearning.errors import SparseLearningError
from sparselearning.export.convert import replace_module
from sparselearning.export.layers import BiasOnly, SparseConv2d, SparseLinear, compress, csr_view, validate_csr
from sparselearning.io import atomic_save, safe_load

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


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, where)
        return
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        for item in value.values():
            _check_plain(item, where)
        return
    raise SparseLearningError(f"{where} must hold only numbers, strings, lists and dicts, found {type(value).__name__}")


def check_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate a model spec `{"name": str, "kwargs": dict}` (None is allowed: no spec)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise SparseLearningError("a model spec is a dict with a 'name' string and a 'kwargs' dict")
    kwargs = dict(spec.get("kwargs") or {})
    _check_plain(kwargs, "model spec kwargs")
    model_constructor(spec["name"])
    return {"name": spec["name"], "kwargs": kwargs}


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """A fresh dense model from a spec."""
    checked = check_spec(spec)
    assert checked is not None
    try:
        model = model_constructor(checked["name"])(**checked["kwargs"])
    except (TypeError, ValueError) as error:
        raise SparseLearningError(f"cannot build model {checked['name']!r} with {checked['kwargs']}: {error}") from None
    if not isinstance(model, nn.Module):
        raise SparseLearningError(f"model {checked['name']!r} did not build an nn.Module")
    return model


def _bias(module: nn.Module) -> torch.Tensor | None:
    bias = getattr(module, "bias", None)
    return None if bias is None else bias.detach().cpu().clone()


def _is_semi_structured(tensor: torch.Tensor) -> bool:
    kind = getattr(torch.sparse, "SparseSemiStructuredTensor", None)
    return kind is not None and isinstance(tensor, kind)


def _layer_entry(module: nn.Module) -> dict[str, Any] | None:
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


def _compressed_if_smaller(weight: torch.Tensor) -> dict[str, Any] | None:
    """A dense weight with enough zeros as CSR components (expanded again on load), else None."""
    nonzero = int(weight.count_nonzero())
    index_bytes = 4 if weight.numel() < 2**31 - 1 else 8
    compressed = nonzero * (weight.element_size() + index_bytes) + (weight.shape[0] + 1) * index_bytes
    if compressed >= weight.numel() * weight.element_size():
        return None
    crow, col, values = compress(weight.detach().reshape(weight.shape[0], -1).cpu())
    return {"kind": "dense", "crow_indices": crow, "col_indices": col, "values": values, "shape": list(weight.shape)}


def _owned_by(key: str, path: str) -> bool:
    return not path or key.startswith(f"{path}.")


def sparse_payload(model: nn.Module, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dict `save_sparse` writes (see the module docstring for its layout)."""
    model = unwrap_model(model)
    checked = check_spec(spec)
    layers: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        if any(_is_semi_structured(p) for p in module.parameters(recurse=False)):
            raise SparseLearningError(
                f"layer {path!r} holds a 2:4 semi-structured weight, a GPU runtime format that is not saved; "
                "save the model exported without semi_structured=True"
            )
        entry = _layer_entry(module)
        if entry is not None:
            layers[path] = entry
    state = {
        key: value.detach().cpu()
        for key, value in model.state_dict().items()
        if not any(_owned_by(key, path) for path in layers)
    }
    for path, module in model.named_modules():
        weight_key = f"{path}.weight" if path else "weight"
        if isinstance(module, MASKABLE_TYPES) and weight_key in state and path not in layers:
            entry = _compressed_if_smaller(state[weight_key])
            if entry is not None:
                layers[path] = entry
                del state[weight_key]
    return {
        "format": FORMAT,
        "model": checked,
        "layers": layers,
        "state": state,
        "torch_version": str(torch.__version__),
    }


def serialized_size(obj: Any) -> int:
    """Bytes `torch.save` writes for `obj`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def save_sparse(model: nn.Module, path: str | os.PathLike[str], *, spec: Mapping[str, Any] | None = None) -> int:
    """Write an exported model (from `to_sparse`) to `path`, atomically; returns the file's size in bytes.

    :param spec: how to rebuild the architecture, `{"name": registry key or sparselearning.models class,
        "kwargs": {...}}`; without it, `load_sparse` needs a freshly built model passed in
    """
    payload = sparse_payload(model, spec)
    target = Path(path)
    try:
        atomic_save(payload, target)
    except OSError as error:
        raise SparseLearningError(f"cannot write {target}: {error.strerror or error}") from None
    return target.stat().st_size


def _tensor(entry: Mapping[str, Any], key: str, path: str) -> torch.Tensor:
    value = entry.get(key)
    if not isinstance(value, torch.Tensor):
        raise SparseLearningError(f"layer {path!r} of the sparse model file has no {key!r} tensor")
    return value


def _ints(entry: Mapping[str, Any], key: str, path: str, length: int | None = None) -> list[int]:
    value = entry.get(key)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise SparseLearningError(f"layer {path!r} of the sparse model file has a bad {key!r}")
    if length is not None and len(value) != length:
        raise SparseLearningError(f"layer {path!r} of the sparse model file: {key!r} needs {length} numbers")
    return list(value)


def _check_target(model: nn.Module, path: str, kinds: tuple[type[nn.Module], ...], shape: list[int]) -> nn.Module:
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        raise SparseLearningError(f"the sparse model file has layer {path!r}, the model has no such module") from None
    weight = getattr(module, "weight", None)
    if not isinstance(module, kinds) or not isinstance(weight, torch.Tensor) or list(weight.shape) != shape:
        raise SparseLearningError(
            f"layer {path!r} in the file has weight shape {shape}, the model has {type(module).__name__} "
            f"{list(weight.shape) if isinstance(weight, torch.Tensor) else 'without a weight'}"
        )
    return module


def _csr_parts(entry: Mapping[str, Any], path: str, shape: list[int]) -> tuple[torch.Tensor, ...]:
    """The checked CSR components of a layer entry, for a weight of `shape` flattened to (out, fan_in)."""
    crow, col, values = (_tensor(entry, key, path) for key in ("crow_indices", "col_indices", "values"))
    try:
        validate_csr(crow, col, values, (shape[0], math.prod(shape[1:])))
    except SparseLearningError as error:
        raise SparseLearningError(f"layer {path!r} of the sparse model file: {error}") from None
    return crow, col, values


def _rebuild_layer(model: nn.Module, path: str, entry: Mapping[str, Any], state: dict[str, Any]) -> nn.Module:
    kind = entry.get("kind")
    bias = entry.get("bias")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise SparseLearningError(f"layer {path!r} of the sparse model file has a bad bias")
    if kind == "dense":
        shape = _ints(entry, "shape", path)
        _check_target(model, path, MASKABLE_TYPES, shape)
        crow, col, values = _csr_parts(entry, path, shape)
        matrix = csr_view(crow, col, values, (shape[0], math.prod(shape[1:]))).to_dense()
        state[f"{path}.weight" if path else "weight"] = matrix.reshape(shape)
        return model
    if kind == "csr_linear":
        out_features, in_features = _ints(entry, "shape", path, 2)
        _check_target(model, path, (nn.Linear,), [out_features, in_features])
        crow, col, values = _csr_parts(entry, path, [out_features, in_features])
        layer: nn.Module = SparseLinear(crow, col, values, in_features, out_features, bias)
    elif kind == "csr_conv":
        shape = _ints(entry, "shape", path, 4)
        _check_target(model, path, (nn.Conv2d,), shape)
        crow, col, values = _csr_parts(entry, path, shape)
        layer = SparseConv2d(
            crow,
            col,
            values,
            shape[1],
            shape[0],
            (shape[2], shape[3]),
            _ints(entry, "stride", path, 2),  # type: ignore[arg-type]
            _ints(entry, "padding", path, 2),  # type: ignore[arg-type]
            _ints(entry, "dilation", path, 2),  # type: ignore[arg-type]
            bias,
        )
    elif kind == "bias_only":
        padding = entry.get("padding")
        layer = BiasOnly(
            int(entry.get("out_features", 0)),
            bias,
            kind=str(entry.get("layer")),
            in_features=int(entry.get("in_features", 0)),
            kernel_size=_ints(entry, "kernel_size", path, 2),  # type: ignore[arg-type]
            stride=_ints(entry, "stride", path, 2),  # type: ignore[arg-type]
            padding=padding if isinstance(padding, str) else _ints(entry, "padding", path, 2),  # type: ignore[arg-type]
            dilation=_ints(entry, "dilation", path, 2),  # type: ignore[arg-type]
        )
    else:
        raise SparseLearningError(f"layer {path!r} of the sparse model file has unknown kind {kind!r}")
    return replace_module(model, path, layer)


def load_sparse(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Read a file written by `save_sparse` (weights-only) and return the sparse model, in eval mode, on CPU.

    :param model: a freshly built dense model of the same architecture, needed only when the file has no
        model spec; it is copied, not modified
    """
    payload = safe_load(Path(path), "sparse model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SparseLearningError(f"{path} is not a sparselearning sparse model file ({FORMAT})")
    layers, state = payload.get("layers"), payload.get("state")
    if not isinstance(layers, dict) or not isinstance(state, dict):
        raise SparseLearningError(f"{path} is a damaged sparse model file: no 'layers' or 'state'")
    if model is not None:
        rebuilt = copy.deepcopy(unwrap_model(model)).cpu()
    elif payload.get("model") is not None:
        rebuilt = build_model(payload["model"])
    else:
        raise SparseLearningError(f"{path} holds no model spec: pass a freshly built model as load_sparse(path, model)")
    state = dict(state)
    for layer_path, entry in layers.items():
        if not isinstance(entry, dict):
            raise SparseLearningError(f"layer {layer_path!r} of {path} is damaged")
        rebuilt = _rebuild_layer(rebuilt, layer_path, entry, state)
    replaced = [p for p, e in layers.items() if e.get("kind") != "dense"]
    missing, unexpected = rebuilt.load_state_dict(state, strict=False)
    missing = [key for key in missing if not any(_owned_by(key, p) for p in replaced)]
    if missing or unexpected:
        raise SparseLearningError(
            f"{path} does not fit the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return rebuilt.eval()


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
