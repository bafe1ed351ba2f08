"""`load_sparse`: read a sparse model file as untrusted data and rebuild the model it describes.

A file may be damaged or hostile, and CSR kernels index memory through the arrays it holds without checking,
so everything in it is checked, field by field, against the model it must fit, before anything large is
allocated. A bad field is one `SparseLearningError` naming the layer and the field.

- The architecture named by the file's spec is built on the meta device (no memory). Its submodules are
  bounded by what the file holds (4 per distinct stored tensor, plus 64), and so are its weights: at most
  `EXPANSION` per number stored, or `ALWAYS_ALLOWED` in all. A spec asking for terabytes is refused here.
- Each layer entry must fit the module at its path: its kind, weight shape, convolution geometry and bias.
  CSR components must be 1-D, int32 or int64 indices (both the same), floating-point values, one row pointer
  per row plus one, and column indices in range (`validate_csr`). A condensed Linear's (out, k) weight is
  floating point and its index table int32/int64 of the same shape, every index an input of the layer
  (`validate_condensed`).
- A "dense" entry (a dense weight stored compressed) expands to at most max(`ALWAYS_ALLOWED`, `EXPANSION`
  x the numbers it stores) weights.
- The rest of the state must hold exactly the model's other tensors, each a dense tensor of the model's
  shape and kind (floating point or not), and nothing that would replace a rebuilt layer's checked buffers.

The file's `preprocessing` record, when it has one, is checked as data (`Preprocessing.from_record`) and becomes
the model's `preprocessing` attribute; a file without it (written before it existed) loads with None there.

The model is then assembled from the file's own tensors (`load_state_dict(assign=True)`), so the memory
used follows the file's size. Floating-point tensors take the dtype of the model they are loaded into (the
spec's model is built in float32; a model passed in keeps its own dtype).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from sparselearning.core import MASKABLE_TYPES, unwrap_model
from sparselearning.errors import SparseLearningError
from sparselearning.export.convert import replace_module
from sparselearning.export.layers import (
    BiasOnly,
    CondensedLinear,
    SparseConv2d,
    SparseLinear,
    SparseMultiheadAttention,
    SparseRecurrent,
    csr_view,
    sparse_attention_supported,
    sparse_conv_supported,
    sparse_recurrent_supported,
    validate_condensed,
    validate_csr,
)
from sparselearning.export.preprocessing import Preprocessing
from sparselearning.export.serialize import FORMAT, build_model, layer_entry, owned_by, tied_names
from sparselearning.io import safe_load

#: Weights a file may describe (or a "dense" entry expand to) per number it stores, beyond `ALWAYS_ALLOWED`.
#: CSR stores about 2 numbers per active weight, so this admits every density down to about 0.012%.
EXPANSION = 4096
ALWAYS_ALLOWED = 2**24

_Layer = TypeVar("_Layer", bound=nn.Module)


class _Fields:
    """Typed reads of one layer entry; every complaint names the layer and the field."""

    def __init__(self, entry: Mapping[str, Any], path: str, what: str = "layer") -> None:
        self.entry, self.path, self.what = entry, path, what

    def fail(self, problem: str) -> SparseLearningError:
        return SparseLearningError(f"{self.what} {self.path!r} of the sparse model file: {problem}")

    def tensor(self, key: str) -> torch.Tensor:
        value = self.entry.get(key)
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.dim() != 1:
            raise self.fail(f"{key!r} must be a 1-D dense tensor, found {_describe(value)}")
        return value

    def ints(self, key: str, length: int | None = None) -> list[int]:
        value = self.entry.get(key)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self.fail(f"{key!r} must be a list of whole numbers, found {_describe(value)}")
        if length is not None and len(value) != length:
            raise self.fail(f"{key!r} must hold {length} numbers, holds {len(value)}")
        return list(value)

    def bias(self, module: nn.Module) -> torch.Tensor | None:
        """The entry's bias, checked against the model's layer (present exactly when the layer has one)."""
        value, expected = self.entry.get("bias"), getattr(module, "bias", None)
        if expected is None:
            if value is not None:
                raise self.fail("holds a 'bias', but the model's layer has none")
            return None
        shape = list(expected.shape)
        if (
            not isinstance(value, torch.Tensor)
            or value.layout != torch.strided
            or not value.is_floating_point()
            or list(value.shape) != shape
        ):
            raise self.fail(f"'bias' must be a floating-point tensor of shape {shape}, found {_describe(value)}")
        return value.to(expected.dtype)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.layout} {value.dtype} tensor of shape {list(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _module_at(model: nn.Module, fields: _Fields) -> nn.Module:
    try:
        return model.get_submodule(fields.path) if fields.path else model
    except AttributeError:
        raise SparseLearningError(
            f"the sparse model file has layer {fields.path!r}, the model has no such module"
        ) from None


def _target(
    model: nn.Module, fields: _Fields, kinds: tuple[type[_Layer], ...], shape: list[int]
) -> tuple[_Layer, torch.Tensor]:
    """The model's layer at the entry's path, which must be one of `kinds` with a weight of `shape`; and that weight."""
    module = _module_at(model, fields)
    weight = getattr(module, "weight", None)
    if not isinstance(module, kinds) or not isinstance(weight, torch.Tensor) or list(weight.shape) != shape:
        found = list(weight.shape) if isinstance(weight, torch.Tensor) else "without a weight"
        raise fields.fail(f"'shape' is {shape}, the model has {type(module).__name__} {found} there")
    return module, weight


def _csr_parts(fields: _Fields, rows: int, columns: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The checked CSR components of an entry, for a (rows x columns) weight; values cast to `dtype`."""
    crow, col, values = (fields.tensor(key) for key in ("crow_indices", "col_indices", "values"))
    if crow.dtype not in (torch.int32, torch.int64) or col.dtype != crow.dtype:
        raise fields.fail(
            f"'crow_indices' and 'col_indices' must both be int32 or both int64, found {crow.dtype} and {col.dtype}"
        )
    if crow.numel() != rows + 1:
        raise fields.fail(f"'crow_indices' must hold {rows + 1} row pointers for {rows} rows, holds {crow.numel()}")
    if not values.is_floating_point() or values.numel() != col.numel():
        raise fields.fail(
            f"'values' must be floating point, one per column index ({col.numel()}), found {_describe(values)}"
        )
    try:
        validate_csr(crow, col, values, (rows, columns))
    except SparseLearningError as error:
        raise fields.fail(str(error)) from None
    return crow, col, values.to(dtype)


def _expanded(fields: _Fields, shape: list[int], dtype: torch.dtype, what: str) -> torch.Tensor:
    """The dense tensor of `shape` that an entry's CSR components describe, refused when it would expand a few
    stored numbers into far more weights (a file that asks for terabytes)."""
    rows, columns = shape[0], math.prod(shape[1:])
    crow, col, values = _csr_parts(fields, rows, columns, dtype)
    stored = crow.numel() + col.numel() + values.numel()
    if rows * columns > max(ALWAYS_ALLOWED, EXPANSION * stored):
        raise fields.fail(
            f"{what} of shape {shape} would expand {stored} stored numbers to {rows * columns} weights; "
            f"at most {EXPANSION} per stored number (or {ALWAYS_ALLOWED} in all) are allowed"
        )
    return csr_view(crow, col, values, (rows, columns)).to_dense().reshape(shape)


def _dense_weight(model: nn.Module, fields: _Fields, state: dict[str, Any]) -> None:
    """A "dense" entry: the layer stays as it is, its weight expanded from CSR into `state`."""
    shape = fields.ints("shape")
    _, weight = _target(model, fields, MASKABLE_TYPES, shape)
    key = f"{fields.path}.weight" if fields.path else "weight"
    if key in state:
        raise fields.fail(f"its weight is stored twice, as a 'dense' entry and as state entry {key!r}")
    state[key] = _expanded(fields, shape, weight.dtype, "a 'dense' entry")


def _expand_tensor(key: Any, entry: Any, expected: Mapping[str, torch.Tensor], state: dict[str, Any]) -> None:
    """A "tensors" entry: a state entry stored as CSR components, checked against the model's tensor of that
    name and expanded into `state`."""
    if not isinstance(key, str) or not isinstance(entry, Mapping):
        raise SparseLearningError(f"tensors entry {_describe(key)} of the sparse model file is not a named dict")
    fields = _Fields(entry, key, "compressed tensor")
    shape = fields.ints("shape")
    target = expected.get(key)
    if target is None or list(target.shape) != shape or len(shape) < 2 or not target.is_floating_point():
        found = "nothing" if target is None else f"a {target.dtype} tensor of shape {list(target.shape)}"
        raise fields.fail(f"a compressed tensor of shape {shape}, the model has {found} there")
    if key in state:
        raise fields.fail("it is stored twice, compressed and as a state entry")
    state[key] = _expanded(fields, shape, target.dtype, "a compressed tensor")


#: Entries marking a layer stored as the dense layer it computes: what says whether the model's layer there has a
#: sparse form (None when it has), and what converts it once its checked weights are loaded.
_CONVERTED: dict[str, tuple[Callable[[nn.Module], str | None], Callable[[Any], nn.Module]]] = {
    "csr_attention": (sparse_attention_supported, SparseMultiheadAttention.from_dense),
    "csr_recurrent": (sparse_recurrent_supported, SparseRecurrent.from_dense),
}


def _check_converted(model: nn.Module, fields: _Fields, kind: str) -> None:
    """A "csr_attention" or "csr_recurrent" entry: the model's layer there must have that sparse form."""
    if set(fields.entry) != {"kind"}:
        raise fields.fail(f"a {kind!r} entry holds only its kind, found {sorted(fields.entry)}")
    reason = _CONVERTED[kind][0](_module_at(model, fields))
    if reason is not None:
        raise fields.fail(f"a {kind!r} entry, but {reason}")


def _untie(groups: list[list[str]], state: dict[str, Any], ties: Any, replaced: list[str], path: Path) -> set[str]:
    """Check the file's ties against the model's (`groups`) and keep one state entry per tied Parameter;
    returns the other names, which `_retie` points at that Parameter after loading."""
    if not isinstance(ties, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v) for k, v in ties.items()
    ):
        raise SparseLearningError(f"'ties' of {path} must map names to lists of names, found {_describe(ties)}")
    for kept, others in ties.items():
        if not any({kept, *others} <= set(names) for names in groups):
            raise SparseLearningError(f"{path} ties {kept!r} to {others}, which the model does not tie")
    aliases: set[str] = set()
    for names in groups:
        layer = next((p for p in replaced if any(owned_by(name, p) for name in names)), None)
        if layer is not None:
            raise SparseLearningError(
                f"layer {layer!r} of {path} replaces a layer holding a tied weight ({', '.join(names)}); a tied "
                "weight must stay one dense Parameter"
            )
        present = [name for name in names if name in state]
        for name in present[1:]:
            if not isinstance(state[name], torch.Tensor) or not torch.equal(state[name], state[present[0]]):
                raise SparseLearningError(f"{path} holds different values for the tied names {present[0]!r}, {name!r}")
            del state[name]
        kept = present[0] if present else names[0]  # an absent one is reported as missing
        aliases.update(name for name in names if name != kept)
    return aliases


def _retie(model: nn.Module, groups: list[list[str]]) -> None:
    """Make every group of tied names one Parameter again (loading assigns each name its own)."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    for names in groups:
        present = [name for name in names if name in parameters and not parameters[name].is_meta]
        if not present:
            continue
        for name in names:
            owner, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, attribute, parameters[present[0]])


def _sparse_linear(model: nn.Module, fields: _Fields) -> nn.Module:
    out_features, in_features = fields.ints("shape", 2)
    module, weight = _target(model, fields, (nn.Linear,), [out_features, in_features])
    crow, col, values = _csr_parts(fields, out_features, in_features, weight.dtype)
    return SparseLinear(crow, col, values, in_features, out_features, fields.bias(module))


def _condensed_linear(model: nn.Module, fields: _Fields) -> nn.Module:
    """A `CondensedLinear`: its (out, k) weight and index table checked against the model's Linear there."""
    out_features, in_features = fields.ints("shape", 2)
    module, dense_weight = _target(model, fields, (nn.Linear,), [out_features, in_features])
    weight, indices = fields.entry.get("weight"), fields.entry.get("indices")
    if not isinstance(weight, torch.Tensor) or not isinstance(indices, torch.Tensor):
        raise fields.fail(f"'weight' and 'indices' must be tensors, found {_describe(weight)}, {_describe(indices)}")
    if weight.layout != torch.strided or weight.dim() != 2 or weight.shape[0] != out_features:
        raise fields.fail(f"'weight' must be a dense ({out_features}, k) tensor, found {_describe(weight)}")
    if weight.shape[1] > in_features:
        raise fields.fail(f"'weight' reads {weight.shape[1]} inputs per neuron, the layer has {in_features}")
    try:
        validate_condensed(weight, indices, in_features)
    except SparseLearningError as error:
        raise fields.fail(str(error)) from None
    return CondensedLinear(weight.to(dense_weight.dtype), indices, in_features, fields.bias(module))


def _sparse_conv(model: nn.Module, fields: _Fields) -> nn.Module:
    shape = fields.ints("shape", 4)
    module, weight = _target(model, fields, (nn.Conv2d,), shape)
    if not sparse_conv_supported(module):
        raise fields.fail("the model's Conv2d there (groups, padding mode or string padding) has no sparse form")
    stride, padding, dilation = (_same_geometry(fields, module, key) for key in ("stride", "padding", "dilation"))
    crow, col, values = _csr_parts(fields, shape[0], math.prod(shape[1:]), weight.dtype)
    return SparseConv2d(
        crow,
        col,
        values,
        in_channels=shape[1],
        out_channels=shape[0],
        kernel_size=(shape[2], shape[3]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=fields.bias(module),
    )


def _same_geometry(fields: _Fields, module: nn.Conv2d, key: str) -> list[int]:
    """The entry's `key` (stride, padding or dilation), which must equal the model's Conv2d's."""
    value = fields.ints(key, 2)
    if value != list(getattr(module, key)):
        raise fields.fail(f"{key!r} is {fields.entry[key]}, the model's Conv2d has {list(getattr(module, key))}")
    return value


def _bias_only(model: nn.Module, fields: _Fields) -> nn.Module:
    """A layer without active weights; its geometry comes from the model and must match the entry's."""
    kind = fields.entry.get("layer")
    if kind not in ("linear", "conv2d"):
        raise fields.fail(f"'layer' must be 'linear' or 'conv2d', found {_describe(kind)}")
    module = _module_at(model, fields)
    fits = isinstance(module, nn.Linear) if kind == "linear" else type(module) is nn.Conv2d
    if not fits:
        raise fields.fail(f"a bias-only {kind} entry, but the model has {type(module).__name__} there")
    layer = BiasOnly.from_dense(module)
    layer.bias = fields.bias(module)  # the file's, checked (the model's may be a meta tensor)
    expected = layer_entry(layer)
    assert expected is not None
    for key, value in expected.items():
        found = fields.entry.get(key)
        if key not in ("kind", "layer", "bias") and (list(found) if isinstance(found, tuple) else found) != value:
            raise fields.fail(f"{key!r} is {_describe(found)}, the model's {type(module).__name__} has {value}")
    return layer


def _rebuild_layer(model: nn.Module, path: Any, entry: Any, state: dict[str, Any]) -> tuple[nn.Module, bool]:
    """Put the layer an entry describes into `model`; returns the model and whether the layer was replaced."""
    if not isinstance(path, str):
        raise SparseLearningError(f"layer path {_describe(path)} of the sparse model file is not a string")
    if not isinstance(entry, Mapping):
        raise SparseLearningError(f"layer {path!r} of the sparse model file is {_describe(entry)}, not a dict")
    fields = _Fields(entry, path)
    kind = entry.get("kind")
    if kind == "dense":
        _dense_weight(model, fields, state)
        return model, False
    builders = {
        "csr_linear": _sparse_linear,
        "condensed_linear": _condensed_linear,
        "csr_conv": _sparse_conv,
        "bias_only": _bias_only,
    }
    if kind not in builders:
        raise fields.fail(f"unknown kind {_describe(kind)}; allowed: dense, {', '.join(builders)}")
    return replace_module(model, path, builders[kind](model, fields)), True


def stored_size(values: Iterable[Any]) -> tuple[int, int]:
    """How many distinct storages the tensors among `values` use, and how many 4-byte numbers those hold.

    Views of one storage count once, so naming the same data many times cannot make a file look bigger.
    """
    storages: dict[int, int] = {}
    for value in values:
        if isinstance(value, torch.Tensor) and value.layout == torch.strided:  # others are refused later
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return len(storages), sum(storages.values()) // 4


def _file_tensors(payload: Mapping[str, Any]) -> Iterator[Any]:
    yield from payload["state"].values()
    entries = [*payload["layers"].values()]
    if isinstance(payload.get("tensors"), Mapping):
        entries += payload["tensors"].values()
    for entry in entries:
        if isinstance(entry, Mapping):
            yield from entry.values()


def _template(payload: Mapping[str, Any], path: Path, model: nn.Module | None) -> nn.Module:
    """What the file's tensors are loaded into: a copy of `model`, or the spec's model on the meta device."""
    if model is not None:
        return copy.deepcopy(unwrap_model(model)).cpu()
    spec = payload.get("model")
    if spec is None:
        raise SparseLearningError(f"{path} holds no model spec: pass a freshly built model as load_sparse(path, model)")
    storages, numbers = stored_size(_file_tensors(payload))
    skeleton = build_model(spec, device="meta", max_modules=4 * storages + 64)
    declared = sum(t.numel() for t in [*skeleton.parameters(), *skeleton.buffers()])
    if declared > max(ALWAYS_ALLOWED, EXPANSION * numbers):
        raise SparseLearningError(
            f"the model spec of {path} describes {declared} weights, and the file stores only {numbers} numbers; "
            f"at most {EXPANSION} weights per stored number (or {ALWAYS_ALLOWED} in all) are allowed"
        )
    return skeleton


def _expected_state(model: nn.Module, replaced: list[str], aliases: Collection[str] = ()) -> dict[str, Any]:
    """The model's state entries the file must fill: all but those of rebuilt layers and other names of tied
    weights."""
    return {
        key: value
        for key, value in model.state_dict(keep_vars=True).items()
        if key not in aliases and not any(owned_by(key, layer) for layer in replaced)
    }


def _checked_state(
    model: nn.Module, state: Mapping[Any, Any], replaced: list[str], path: Path, aliases: set[str]
) -> dict[str, Any]:
    """The file's state, each entry checked against the model's tensor of that name and cast to its dtype."""
    expected = _expected_state(model, replaced, aliases)
    checked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = expected.get(key) if isinstance(key, str) else None
        if target is None:
            rebuilt = isinstance(key, str) and any(owned_by(key, layer) for layer in replaced)
            why = " (it would replace the checked data of a rebuilt sparse layer)" if rebuilt else ""
            raise SparseLearningError(f"state entry {key!r} of {path} fits no tensor of the model{why}")
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_complex():
            raise SparseLearningError(f"state entry {key!r} of {path} is {_describe(value)}, not a dense real tensor")
        if value.shape != target.shape or value.is_floating_point() != target.is_floating_point():
            raise SparseLearningError(
                f"state entry {key!r} of {path} is {_describe(value)}, the model needs a {target.dtype} tensor of "
                f"shape {list(target.shape)}"
            )
        checked[key] = value.to(target.dtype)
    missing = sorted(key for key in expected if key not in checked)
    if missing:
        raise SparseLearningError(f"{path} does not fit the model: it has no state entries {missing[:5]}")
    return checked


def load_sparse(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Read a file written by `save_sparse` (weights-only) and return the sparse model, in eval mode, on CPU.

    The model's `preprocessing` attribute is the input preprocessing the file records (a `Preprocessing`:
    `model(model.preprocessing(raw))` for raw uint8 pixels, [0, 1] floats or float features), or None when the
    file records none.

    :param model: a freshly built dense model of the same architecture, needed only when the file has no
        model spec; it is copied, not modified
    """
    path = Path(path)
    payload = safe_load(path, "sparse model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SparseLearningError(f"{path} is not a sparselearning sparse model file ({FORMAT})")
    layers, state = payload.get("layers"), payload.get("state")
    if not isinstance(layers, dict) or not isinstance(state, dict):
        raise SparseLearningError(f"{path} is a damaged sparse model file: no 'layers' or 'state' dict")
    record = payload.get("preprocessing")
    preprocessing = None if record is None else Preprocessing.from_record(record, str(path))
    tensors, ties = payload.get("tensors", {}), payload.get("ties", {})
    if not isinstance(tensors, dict):
        raise SparseLearningError(f"{path} is a damaged sparse model file: 'tensors' is {_describe(tensors)}")
    rebuilt = _template(payload, path, model)
    groups = tied_names(rebuilt)
    state = dict(state)
    replaced: list[str] = []
    converted: dict[str, str] = {}  # path -> kind, for layers converted after loading
    for layer_path, entry in layers.items():
        if isinstance(layer_path, str) and isinstance(entry, Mapping) and entry.get("kind") in _CONVERTED:
            _check_converted(rebuilt, _Fields(entry, layer_path), entry["kind"])
            converted[layer_path] = entry["kind"]
            continue
        rebuilt, was_replaced = _rebuild_layer(rebuilt, layer_path, entry, state)
        if was_replaced:
            replaced.append(layer_path)
    expected = _expected_state(rebuilt, replaced)
    for key, entry in tensors.items():
        _expand_tensor(key, entry, expected, state)
    aliases = _untie(groups, state, ties, [*replaced, *converted], path)
    rebuilt.load_state_dict(_checked_state(rebuilt, state, replaced, path, aliases), strict=False, assign=True)
    _retie(rebuilt, groups)
    unfilled = [name for name, t in [*rebuilt.named_parameters(), *rebuilt.named_buffers()] if t.is_meta]
    if unfilled:
        raise SparseLearningError(f"{path} does not fit the model: nothing in it fills {sorted(unfilled)[:5]}")
    for layer_path, kind in converted.items():
        layer = rebuilt.get_submodule(layer_path) if layer_path else rebuilt
        rebuilt = replace_module(rebuilt, layer_path, _CONVERTED[kind][1](layer))
    object.__setattr__(rebuilt, "preprocessing", preprocessing)  # a plain attribute (Module typing wants tensors)
    return rebuilt.eval()
