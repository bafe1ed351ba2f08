"""`to_sparse`: a copy of a masked model in which sparse layers compute only their active weights.

What each masked weight becomes, and why:

- nn.Linear: a `SparseLinear` (CSR weight). Measured on CPU, the CSR product beats the dense one from 90%
  sparsity on (1.8x to 48x for a 4096-4096-4096-10 MLP), except for small layers at batch 1, where fixed
  per-call costs dominate (LeNet-300-100 ran at 0.75-0.92x of dense there); the file is 5-50x smaller.
  Not when other code uses the weight besides the layer's own forward (found by tracing the model on
  `example_input`; always so for `nn.MultiheadAttention.out_proj`, which the attention passes to
  `F.multi_head_attention_forward` without calling it), when the weight is tied, when the class overrides
  `forward`, or when the CPU has no CSR kernel for its dtype: such a layer stays dense.
- nn.Linear whose mask has constant fan-in (every non-empty row keeps the same number k of inputs, as SRigL
  trains): with `example_input`, timed as dense, CSR and `CondensedLinear` (an (out, k) dense weight and an index
  table, computed by gathering inputs) on the activations it receives, and the fastest kept; without it, CSR as
  for any masked Linear (condensed beats CSR and dense only on some shapes and batches, so it is never chosen
  unmeasured).
- nn.Conv2d: a `SparseConv2d` (unfold + CSR matmul) only where it is measured to be faster than the dense
  convolution on the activations the layer really sees (`example_input`), because unfolding costs more than
  the dense convolution itself for many layers and batch sizes. Without `example_input` a convolution becomes
  sparse only at or below `CONV_DENSITY_THRESHOLD` (see docs/performance.md for the measurement behind it).
- nn.MultiheadAttention (its input projections and `out_proj`): a `SparseMultiheadAttention` only where it is
  measured faster on `example_input`. The race runs the enclosing `nn.TransformerEncoderLayer` /
  `nn.TransformerDecoderLayer` if there is one, since the dense layer may take PyTorch's fused fast path,
  which the sparse one leaves. Without `example_input` attention stays dense.
- nn.LSTM, nn.GRU, nn.RNN: a `SparseRecurrent` (a CSR product per time step) only where it is measured faster
  than the fused dense recurrence on the layer's real input from `example_input`: that pays for wide, very sparse
  layers and loses for narrow ones (benchmarks/recurrent_export.py). Without `example_input`, with an LSTM's
  `proj_size` or a packed-sequence input, the layer stays dense with the mask multiplied in.
- A tied weight (one Parameter under several names) stays one dense Parameter, so the tie holds; the file
  stores it once, compressed.
- A layer whose mask keeps every weight stays the dense layer it was; a Linear or Conv2d that keeps none
  becomes a `BiasOnly` module. Any other masked weight (an embedding table, a grouped convolution) stays dense,
  with the mask multiplied in.

Masks are always multiplied into the weights first, so every dense fallback computes what the masked model
did, and the file stores every mostly-zero weight compressed whatever the layer computes with.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from sparselearning.core import Masking, unwrap_model
from sparselearning.errors import SparseLearningError, first_line
from sparselearning.export.layers import (
    BiasOnly,
    CondensedLinear,
    SparseConv2d,
    SparseLinear,
    SparseMultiheadAttention,
    SparseRecurrent,
    constant_fan_in,
    sparse_attention_supported,
    sparse_conv_supported,
    sparse_recurrent_supported,
)
from sparselearning.export.semi_structured import is_nm_sparse, to_semi_structured_, use_semi_structured
from sparselearning.masking.selection import Candidate, weight_candidates

#: Without `example_input`, a Conv2d becomes a SparseConv2d only at or below this density. Measured on a 2-core
#: CPU (docs/performance.md, benchmarks/export_speed.py): at 1% density and batch 1, unfold + CSR beat the dense
#: convolution 1.7-1.9x for three of four layers, and at batch 64 it ran at 0.5-1.2x for those three; the layer
#: with the largest activations lost 2-2.5x at every density and batch. No density makes it win everywhere,
#: since unfolding alone can cost more than the dense convolution, so the fallback only goes sparse where the
#: batch-1 gain is large; `example_input` gives a measured choice per layer instead.
CONV_DENSITY_THRESHOLD = 0.01

#: Kinds of `LayerDecision` whose layer computes only its active weights.
SPARSE_KINDS = (
    "csr_linear",
    "condensed_linear",
    "csr_conv",
    "csr_attention",
    "csr_recurrent",
    "bias_only",
    "semi_structured",
)

#: Layers whose fused dense fast path reads the weights of their attention and of their Linear children
#: directly (so these stay dense or go sparse together), and the containers that check their first layer's
#: weights to choose a fast path for all of them (so all their layers are decided together).
_ATTENTION_BLOCKS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_ATTENTION_STACKS = (nn.Transformer, nn.TransformerEncoder, nn.TransformerDecoder)

MaskSource = Masking | Mapping[str, torch.Tensor] | None


@dataclass(frozen=True)
class LayerDecision:
    """What `to_sparse` did with one masked layer (or tied weight), and why."""

    name: str  # module path in the model (a tied weight: its parameter name)
    kind: str  # one of SPARSE_KINDS, or "csr_attention", "csr_recurrent", "dense", "bias_only", "semi_structured"
    density: float  # share of the layer's masked weights that are nonzero after masking
    reason: str
    dense_ms: float | None = None  # measured time of the dense layer on its example activations
    sparse_ms: float | None = None  # measured time of the sparse candidate
    parameters: tuple[str, ...] = ()  # the masked parameters this decision covers
    timings: tuple[tuple[str, float], ...] = ()  # ms of every layout raced, where more than two were

    @property
    def sparse(self) -> bool:
        """Whether the exported layer computes only its active weights."""
        return self.kind in SPARSE_KINDS


def _named_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every name of every parameter, tied ones under each of their names."""
    return dict(model.named_parameters(remove_duplicate=False))


def _resolve_name(parameters: Mapping[str, nn.Parameter], name: object, model_name: str) -> str:
    """The parameter name a mask key refers to: a parameter name, or a module path (or "") meaning its weight."""
    if not isinstance(name, str):
        raise SparseLearningError(f"mask {name!r} is not named by a string; masks are keyed by weight name")
    if name in parameters:
        return name
    weight_name = f"{name}.weight" if name else "weight"
    if weight_name in parameters:
        return weight_name
    raise SparseLearningError(f"mask {name!r} names no parameter of {model_name}")


def parameter_masks(model: nn.Module, masking: MaskSource) -> dict[str, torch.Tensor]:
    """Bool masks keyed by parameter name, one per parameter (a tied one under the first name given).

    Without masks, every weight `Masking` masks by default is masked where it is nonzero.
    """
    parameters = _named_parameters(model)
    if masking is None:
        return {
            candidate.name: candidate.parameter.detach() != 0
            for candidate in weight_candidates(model)
            if candidate.masked_by_default
        }
    if isinstance(masking, Masking):
        raw: Mapping[str, torch.Tensor] = masking.mask_dict
    elif isinstance(masking, Mapping):
        raw = masking
    else:
        raise SparseLearningError(f"masking must be a Masking, a dict of masks or None, got {type(masking).__name__}")
    masks: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for key, mask in raw.items():
        name = _resolve_name(parameters, key, type(model).__name__)
        checked = _checked_mask(str(key), mask, parameters[name])
        first = seen.setdefault(id(parameters[name]), name)
        if first != name:  # two names of one tied weight
            if not torch.equal(masks[first], checked):
                raise SparseLearningError(
                    f"masks {first!r} and {key!r} differ, but name one tied weight; give it one mask"
                )
            continue
        masks[name] = checked
    return masks


def _checked_mask(name: str, mask: object, weight: torch.Tensor) -> torch.Tensor:
    """A mask as a bool tensor on its weight's device: the weight's shape, and only 0/1 (or True/False) values."""
    if not isinstance(mask, torch.Tensor) or mask.layout != torch.strided:
        kind = f"a {mask.layout} tensor" if isinstance(mask, torch.Tensor) else f"a {type(mask).__name__}"
        raise SparseLearningError(f"mask {name!r} is {kind}, not a dense tensor of its weight's shape")
    if tuple(mask.shape) != tuple(weight.shape):
        raise SparseLearningError(f"mask {name!r} has shape {tuple(mask.shape)}, its weight has {tuple(weight.shape)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise SparseLearningError(f"mask {name!r} is not boolean: it holds values other than 0 and 1")
    return mask.to(device=weight.device, dtype=torch.bool)


def replace_module(root: nn.Module, path: str, replacement: nn.Module) -> nn.Module:
    """Put `replacement` at `path` in `root`; returns the (possibly new) root."""
    if not path:
        return replacement
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, replacement)
    return root


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(function: Callable[[], object], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - start


def _race(contenders: dict[str, Callable[[], object]], device: torch.device, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each contender, alternating them; a clear loser is dropped early.

    After two warm-up calls each (caches, lazy initialisation), the best of three single calls decides at
    once when one contender is more than 4 times slower; otherwise `rounds` alternating rounds do.
    """
    for function in contenders.values():
        function()
        function()
    quick = {name: min(_time_once(function, device) for _ in range(3)) for name, function in contenders.items()}
    fastest = min(quick.values())
    if max(quick.values()) > 4 * fastest:
        return quick
    calls = max(1, min(50, int(2e-3 / max(fastest, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for round_index in range(rounds):
        for name in order if round_index % 2 == 0 else reversed(order):
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                contenders[name]()
            _synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """The tensors among a call's arguments (inside lists, tuples and dicts)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


class _WeightUse(TorchFunctionMode):
    """Records, for watched weights, every torch call that uses one outside the forward of a module holding it.

    Replacing a layer by a sparse one is only correct when nothing else reads its weight: `MultiheadAttention`
    reads `out_proj.weight` itself, a tied table is read by the embedding, custom code may call
    `F.linear(x, self.fc.weight)`. Module forward hooks keep the stack of running modules.
    """

    def __init__(self, holders: Mapping[int, set[int]]) -> None:
        super().__init__()
        self.holders = holders  # id(weight) -> ids of the modules holding it
        self.running: list[nn.Module] = []
        self.foreign: dict[int, str] = {}  # id(weight) -> the module (class) that used it

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        current = self.running[-1] if self.running else None
        for tensor in _tensors_in((args, kwargs)):
            holders = self.holders.get(id(tensor))
            if holders is not None and id(current) not in holders and id(tensor) not in self.foreign:
                self.foreign[id(tensor)] = "the model's forward" if current is None else type(current).__name__
        return func(*args, **kwargs)


@dataclass
class _Trace:
    """What one run of the model on `example_input` showed: the first call of each watched module, and the
    weights used outside their own layer's forward."""

    calls: dict[str, tuple[tuple, dict[str, Any]]]
    foreign: dict[int, str]


def _trace(
    model: nn.Module, paths: list[str], holders: Mapping[int, set[int]], example_input: torch.Tensor | tuple
) -> _Trace:
    """Run `model` once on `example_input`, capturing the arguments `paths` receive and the weights' uses."""
    calls: dict[str, tuple[tuple, dict[str, Any]]] = {}
    tracer = _WeightUse(holders)
    handles = []
    for path in paths:

        def capture(_module: nn.Module, args: tuple, kwargs: dict[str, Any], _path: str = path) -> None:
            if _path not in calls:
                calls[_path] = (args, dict(kwargs))

        handles.append(model.get_submodule(path).register_forward_pre_hook(capture, with_kwargs=True))

    def enter(module: nn.Module, _args: tuple) -> None:
        tracer.running.append(module)

    def leave(_module: nn.Module, _args: tuple, _output: Any) -> None:  # returns None: the output is kept
        tracer.running.pop()

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave, always_call=True))
    try:
        with torch.no_grad(), tracer:
            arguments = example_input if isinstance(example_input, tuple) else (example_input,)
            model(*arguments)
    except Exception as error:
        raise SparseLearningError(f"the model cannot run on example_input: {first_line(error)}") from None
    finally:
        for handle in handles:
            handle.remove()
    return _Trace(calls, tracer.foreign)


def _decide_conv(
    path: str,
    layer: nn.Conv2d,
    density: float,
    activation: torch.Tensor | None,
    index_dtype: str | torch.dtype,
    threshold: float,
) -> tuple[nn.Module, LayerDecision]:
    if not sparse_conv_supported(layer):
        return layer, LayerDecision(path, "dense", density, "grouped, non-zero padding or string padding")
    candidate = SparseConv2d.from_dense(layer, index_dtype)
    if activation is None:
        if density <= threshold:
            return candidate, LayerDecision(path, "csr_conv", density, f"density <= threshold {threshold}")
        return layer, LayerDecision(path, "dense", density, f"density > threshold {threshold}")
    contenders = {"dense": lambda: layer(activation), "sparse": lambda: candidate(activation)}
    with torch.no_grad():
        timings = _race(contenders, activation.device)
    dense_ms, sparse_ms = timings["dense"] * 1e3, timings["sparse"] * 1e3
    if timings["sparse"] < timings["dense"]:
        return candidate, LayerDecision(path, "csr_conv", density, "measured faster", dense_ms, sparse_ms)
    return layer, LayerDecision(path, "dense", density, "measured slower as sparse", dense_ms, sparse_ms)


def _linear_obstacle(layer: nn.Linear, weight_id: int, trace: _Trace | None, parent: nn.Module | None) -> str | None:
    """Why a masked Linear cannot become a `SparseLinear` (None when it can)."""
    if isinstance(parent, nn.MultiheadAttention) and layer is getattr(parent, "out_proj", None):
        return "out_proj of a MultiheadAttention, which reads its weight without calling it"
    if type(layer).forward is not nn.Linear.forward:
        return f"{type(layer).__name__} overrides nn.Linear.forward"
    if trace is not None and weight_id in trace.foreign:
        return f"its weight is also used outside its forward (by {trace.foreign[weight_id]})"
    return _csr_dtype_obstacle(layer.weight)


def _csr_dtype_obstacle(weight: torch.Tensor) -> str | None:
    if weight.device.type == "cpu" and weight.dtype not in (torch.float32, torch.float64):
        return f"no CPU CSR kernel for {str(weight.dtype).split('.')[-1]} weights"
    return None


def _ancestors(path: str) -> list[str]:
    """The paths above `path`, outermost (the model, "") first, `path` itself last."""
    parts = path.split(".") if path else []
    return [".".join(parts[:depth]) for depth in range(len(parts) + 1)]


def attention_unit(model: nn.Module, path: str) -> str | None:
    """The module decided as one for a masked weight held by the module at `path`, or None when its weight is
    no attention weight: the outermost Transformer stack above it, else its Transformer layer, else its
    MultiheadAttention. A layer's Linear children belong to it, since its fused fast path reads them."""
    if not path:
        return None
    module, parent = model.get_submodule(path), model.get_submodule(path.rpartition(".")[0])
    if isinstance(module, nn.MultiheadAttention):
        attention = path
    elif isinstance(parent, nn.MultiheadAttention) and module is parent.out_proj:
        attention = path.rpartition(".")[0]
    elif isinstance(module, nn.Linear) and isinstance(parent, _ATTENTION_BLOCKS):
        attention = path
    else:
        return None
    above = _ancestors(attention)
    stacks = [p for p in above if isinstance(model.get_submodule(p), _ATTENTION_STACKS)]
    if stacks:
        return stacks[0]
    blocks = [p for p in above if isinstance(model.get_submodule(p), _ATTENTION_BLOCKS)]
    return blocks[-1] if blocks else attention


def _sparse_unit(unit: nn.Module, members: Sequence[str], index_dtype: str | torch.dtype) -> nn.Module | str:
    """A copy of `unit` with every attention in it a `SparseMultiheadAttention` and every member Linear (by
    path relative to `unit`) a `SparseLinear`; or why that is impossible."""
    for module in [unit, *unit.modules()]:
        weights = [p for p in module.parameters(recurse=False) if p.dim() >= 2]
        obstacle = next(filter(None, (_csr_dtype_obstacle(w) for w in weights)), None)
        if isinstance(module, nn.MultiheadAttention):
            obstacle = obstacle or sparse_attention_supported(module)
        if obstacle is not None:
            return obstacle
    copied = copy.deepcopy(unit)
    attentions = [path for path, m in copied.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for path in attentions:
        layer = copied.get_submodule(path)
        assert isinstance(layer, nn.MultiheadAttention)
        copied = replace_module(copied, path, SparseMultiheadAttention.from_dense(layer, index_dtype))
    for path in members:
        layer = copied.get_submodule(path)
        if isinstance(layer, nn.Linear):
            if type(layer).forward is not nn.Linear.forward:
                return f"{type(layer).__name__} overrides nn.Linear.forward"
            copied = replace_module(copied, path, SparseLinear.from_dense(layer, index_dtype))
    return copied


def _decide_attention(
    model: nn.Module,
    path: str,
    names: tuple[str, ...],
    density: float,
    trace: _Trace | None,
    index_dtype: str | torch.dtype,
) -> tuple[nn.Module | None, LayerDecision]:
    """A sparse copy of the attention unit at `path` where measured faster, else None (it stays dense)."""
    unit = model.get_submodule(path)
    members = sorted({name.rpartition(".")[0][len(path) + 1 if path else 0 :] for name in names})
    candidate = _sparse_unit(unit, [m for m in members if m], index_dtype)
    if isinstance(candidate, str):
        return None, LayerDecision(path, "dense", density, candidate, parameters=names)
    call = None if trace is None else trace.calls.get(path)
    if call is None:
        why = "no example_input" if trace is None else "it did not run on example_input"
        reason = f"not measured ({why}); attention goes sparse only where measured faster"
        return None, LayerDecision(path, "dense", density, reason, parameters=names)
    args, kwargs = call
    contenders = {"dense": lambda: unit(*args, **kwargs), "sparse": lambda: candidate(*args, **kwargs)}
    first = next(_tensors_in((args, kwargs)), None)
    with torch.no_grad():
        timings = _race(contenders, torch.device("cpu") if first is None else first.device)
    dense_ms, sparse_ms = timings["dense"] * 1e3, timings["sparse"] * 1e3
    if timings["sparse"] < timings["dense"]:
        return candidate, LayerDecision(path, "csr_attention", density, "measured faster", dense_ms, sparse_ms, names)
    return None, LayerDecision(path, "dense", density, "measured slower as sparse", dense_ms, sparse_ms, names)


def _density(parameters: Sequence[torch.Tensor]) -> float:
    return sum(int(p.count_nonzero()) for p in parameters) / max(1, sum(p.numel() for p in parameters))


def to_sparse_with_report(
    model: nn.Module,
    masking: MaskSource = None,
    *,
    example_input: torch.Tensor | tuple | None = None,
    index_dtype: str | torch.dtype = "auto",
    semi_structured: bool | str = False,
    conv_density_threshold: float = CONV_DENSITY_THRESHOLD,
) -> tuple[nn.Module, list[LayerDecision]]:
    """`to_sparse`, also returning what was decided for each masked layer (with the timings measured)."""
    source = unwrap_model(model)
    masks = parameter_masks(source, masking)
    exported = copy.deepcopy(source).eval()
    first = next(exported.parameters(), None)
    # "auto" converts only the layers that are 2:4 already; True converts every masked Linear (or refuses it).
    only_2_4 = semi_structured == "auto"
    semi_structured = use_semi_structured(semi_structured, torch.device("cpu") if first is None else first.device)
    parameters = _named_parameters(exported)
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    held: dict[int, Candidate] = {id(c.parameter): c for c in weight_candidates(exported)}
    modules = dict(exported.named_modules())

    # Group the masked weights into the units a decision is made for.
    attention: dict[str, list[str]] = {}
    recurrent: dict[str, list[str]] = {}
    singles: list[tuple[str, Candidate]] = []
    for name in masks:
        candidate = held[id(parameters[name])]
        holding = candidate.holdings[0]
        unit = attention_unit(exported, holding.module_name)
        if len(candidate.holdings) > 1:
            singles.append((name, candidate))
        elif unit is not None:
            attention.setdefault(unit, []).append(name)
        elif isinstance(holding.module, nn.RNNBase):
            recurrent.setdefault(holding.module_name, []).append(name)
        else:
            singles.append((name, candidate))

    trace: _Trace | None = None
    if example_input is not None:
        watched = {id(c.parameter): {id(h.module) for h in c.holdings} for _, c in singles}
        watched.update({id(parameters[n]): {id(modules[path])} for path, names in recurrent.items() for n in names})
        traced = [*attention, *recurrent]
        traced += [
            c.holdings[0].module_name
            for _, c in singles
            if c.holdings[0].attribute == "weight"
            and (
                sparse_conv_supported(c.holdings[0].module)
                or (isinstance(c.holdings[0].module, nn.Linear) and constant_fan_in(c.parameter) is not None)
            )
        ]
        trace = _trace(exported, sorted(set(traced)), watched, example_input)

    decisions: list[LayerDecision] = []
    for name, candidate in singles:
        two_four = semi_structured and (not only_2_4 or is_nm_sparse(candidate.parameter))
        replacement, decision = _decide_single(
            name, candidate, trace, modules, index_dtype, two_four, conv_density_threshold
        )
        if replacement is not None:
            exported = replace_module(exported, candidate.holdings[0].module_name, replacement)
        decisions.append(decision)
    for path, names in attention.items():
        weights = [parameters[n] for n in names]
        replacement, decision = _decide_attention(exported, path, tuple(names), _density(weights), trace, index_dtype)
        if replacement is not None:
            exported = replace_module(exported, path, replacement)
        decisions.append(decision)
    for path, names in recurrent.items():
        weights = [parameters[n] for n in names]
        replacement, decision = _decide_recurrent(exported, path, tuple(names), weights, trace, index_dtype)
        if replacement is not None:
            exported = replace_module(exported, path, replacement)
        decisions.append(decision)
    exported.eval()
    if example_input is not None and any(d.sparse for d in decisions):
        _check_runs(exported, example_input, decisions)
    return exported, decisions


def _decide_recurrent(
    model: nn.Module,
    path: str,
    names: tuple[str, ...],
    weights: Sequence[torch.Tensor],
    trace: _Trace | None,
    index_dtype: str | torch.dtype,
) -> tuple[nn.Module | None, LayerDecision]:
    """A `SparseRecurrent` for the recurrent layer at `path` where measured faster on the input it received from
    `example_input`, else None (it stays dense, with the mask multiplied in)."""
    layer = model.get_submodule(path)
    density = _density(weights)

    def dense(reason: str, dense_ms: float | None = None, sparse_ms: float | None = None) -> tuple[None, LayerDecision]:
        return None, LayerDecision(path, "dense", density, reason, dense_ms, sparse_ms, names)

    obstacle = sparse_recurrent_supported(layer) or next(filter(None, map(_csr_dtype_obstacle, weights)), None)
    if obstacle is not None:
        return dense(obstacle)
    foreign = [trace.foreign[id(w)] for w in weights if trace is not None and id(w) in trace.foreign]
    if foreign:
        return dense(f"its weight is also used outside its forward (by {foreign[0]})")
    if all(int(w.count_nonzero()) == w.numel() for w in weights):
        return dense("mask keeps every weight")
    call = None if trace is None else trace.calls.get(path)
    if call is None:
        why = "no example_input" if trace is None else "it did not run on example_input"
        return dense(f"not measured ({why}); recurrent layers go sparse only where measured faster")
    args, kwargs = call
    if not args or not isinstance(args[0], torch.Tensor):
        return dense("its input is a packed sequence, which the sparse recurrence does not take")
    assert isinstance(layer, nn.RNNBase)
    candidate = SparseRecurrent.from_dense(layer, index_dtype)
    contenders = {"dense": lambda: layer(*args, **kwargs), "sparse": lambda: candidate(*args, **kwargs)}
    with torch.no_grad():
        timings = _race(contenders, args[0].device)
    dense_ms, sparse_ms = timings["dense"] * 1e3, timings["sparse"] * 1e3
    if timings["sparse"] < timings["dense"]:
        return candidate, LayerDecision(path, "csr_recurrent", density, "measured faster", dense_ms, sparse_ms, names)
    return dense("measured slower as sparse", dense_ms, sparse_ms)


def _decide_single(
    name: str,
    candidate: Candidate,
    trace: _Trace | None,
    modules: Mapping[str, nn.Module],
    index_dtype: str | torch.dtype,
    semi_structured: bool,
    threshold: float,
) -> tuple[nn.Module | None, LayerDecision]:
    """The replacement (None: keep it) and decision for a masked weight outside attention and recurrent layers."""
    weight = candidate.parameter
    holding = candidate.holdings[0]
    layer, path = holding.module, holding.module_name
    nonzero = int(weight.count_nonzero())
    density = nonzero / max(1, weight.numel())
    names = (name,)
    if len(candidate.holdings) > 1:
        reason = f"tied weight ({', '.join(candidate.names)}): kept as one dense Parameter so the tie holds"
        return None, LayerDecision(name, "dense", density, reason, parameters=names)
    if holding.attribute != "weight" or not (isinstance(layer, nn.Linear) or type(layer) is nn.Conv2d):
        reason = f"no sparse kernel for {type(layer).__name__}.{holding.attribute}"
        return None, LayerDecision(path, "dense", density, reason, parameters=names)
    if nonzero == weight.numel():
        return None, LayerDecision(path, "dense", density, "mask keeps every weight", parameters=names)
    plain = type(layer) is nn.Conv2d or type(layer).forward is nn.Linear.forward
    if nonzero == 0 and plain and (trace is None or id(weight) not in trace.foreign):
        return BiasOnly.from_dense(layer), LayerDecision(path, "bias_only", 0.0, "no active weight", parameters=names)
    if isinstance(layer, nn.Linear):
        parent_path = path.rpartition(".")[0]
        obstacle = _linear_obstacle(layer, id(weight), trace, modules.get(parent_path) if path else None)
        if obstacle is not None:
            return None, LayerDecision(path, "dense", density, obstacle, parameters=names)
        if semi_structured:
            converted = to_semi_structured_(layer)
            reason = "2:4 kernel" if converted else "shape or dtype unsupported by the 2:4 kernels"
            return None, LayerDecision(
                path, "semi_structured" if converted else "dense", density, reason, parameters=names
            )
        replacement = SparseLinear.from_dense(layer, index_dtype)
        call = None if trace is None else trace.calls.get(path)
        activation = call[0][0] if call is not None and call[0] and isinstance(call[0][0], torch.Tensor) else None
        if activation is not None and constant_fan_in(weight) is not None:
            return _decide_condensed(path, layer, replacement, density, activation, names)
        return replacement, LayerDecision(path, "csr_linear", density, "masked Linear", parameters=names)
    assert isinstance(layer, nn.Conv2d)
    if trace is not None and id(weight) in trace.foreign:
        reason = f"its weight is also used outside its forward (by {trace.foreign[id(weight)]})"
        return None, LayerDecision(path, "dense", density, reason, parameters=names)
    obstacle = _csr_dtype_obstacle(weight)
    if obstacle is not None:
        return None, LayerDecision(path, "dense", density, obstacle, parameters=names)
    call = None if trace is None else trace.calls.get(path)
    activation = call[0][0] if call is not None and call[0] and isinstance(call[0][0], torch.Tensor) else None
    chosen, decision = _decide_conv(path, layer, density, activation, index_dtype, threshold)
    return (None if chosen is layer else chosen), replace(decision, parameters=names)


def _decide_condensed(
    path: str,
    layer: nn.Linear,
    csr: SparseLinear,
    density: float,
    activation: torch.Tensor,
    names: tuple[str, ...],
) -> tuple[nn.Module | None, LayerDecision]:
    """The fastest of dense, CSR and condensed for a constant fan-in Linear, timed on the activation it received
    from `example_input` (None: it stays dense)."""
    condensed = CondensedLinear.from_dense(layer)
    contenders = {"dense": lambda: layer(activation), "csr": lambda: csr(activation)}
    contenders["condensed"] = lambda: condensed(activation)
    with torch.no_grad():
        timings = _race(contenders, activation.device)
    ms = {name: seconds * 1e3 for name, seconds in timings.items()}
    listed = tuple((name, ms[name]) for name in contenders if name in ms)
    measured = ", ".join(f"{name} {value:.4f} ms" for name, value in listed)
    winner = min(ms, key=lambda name: ms[name])
    best_sparse = min((ms[name] for name in ("csr", "condensed") if name in ms), default=None)
    if winner == "dense":
        reason = f"measured fastest as dense ({measured})"
        return None, LayerDecision(path, "dense", density, reason, ms.get("dense"), best_sparse, names, listed)
    chosen: nn.Module = condensed if winner == "condensed" else csr
    kind = "condensed_linear" if winner == "condensed" else "csr_linear"
    reason = f"measured fastest as {winner} ({measured})"
    return chosen, LayerDecision(path, kind, density, reason, ms.get("dense"), ms[winner], names, listed)


def _check_runs(model: nn.Module, example_input: torch.Tensor | tuple, decisions: list[LayerDecision]) -> None:
    """Refuse, in one line, an exported model that cannot run on `example_input`."""
    try:
        with torch.no_grad():
            model(*(example_input if isinstance(example_input, tuple) else (example_input,)))
    except Exception as error:
        sparse = [d.name for d in decisions if d.sparse]
        raise SparseLearningError(
            f"cannot export: the model with sparse layers {sparse[:5]} fails on example_input "
            f"({first_line(error)}); some code must use one of these layers as the dense layer it was"
        ) from None


def to_sparse(
    model: nn.Module,
    masking: MaskSource = None,
    *,
    example_input: torch.Tensor | tuple | None = None,
    index_dtype: str | torch.dtype = "auto",
    semi_structured: bool | str = False,
    conv_density_threshold: float = CONV_DENSITY_THRESHOLD,
) -> nn.Module:
    """A copy of `model` for inference in which masked layers store and compute only their active weights.

    The input model is never modified. The copy is in eval mode and, on the same inputs, returns what the
    masked model returns (up to float summation order).

    :param model: the trained model (bare or DDP-wrapped)
    :param masking: its `Masking`, or masks by parameter name (`"fc.weight"`, `"attn.in_proj_weight"`, any name
        of a tied weight) or, for a layer's `weight`, module path; None treats every zero of every weight
        `Masking` masks by default (Linear, conv, attention, recurrent) as masked
    :param example_input: a batch as the model will see it in use; each Conv2d, attention and recurrent layer is
        timed dense and sparse on the activations it receives and the faster kept, and the exported model must
        run on it. Without it, `conv_density_threshold` decides for convolutions; attention and recurrent layers
        stay dense
    :param index_dtype: "auto" (int32 where indices fit: faster and smaller), "int32" or "int64"
    :param semi_structured: turn 2:4-masked Linear layers into 2:4 semi-structured ones (CUDA, compute
        capability >= 8.0, fp16/bf16 weights); raises `SparseLearningError` where that is impossible; "auto"
        does it where the hardware can and keeps the CPU layouts elsewhere
    :param conv_density_threshold: density at or below which a Conv2d goes sparse without `example_input`
    """
    exported, _ = to_sparse_with_report(
        model,
        masking,
        example_input=example_input,
        index_dtype=index_dtype,
        semi_structured=semi_structured,
        conv_density_threshold=conv_density_threshold,
    )
    return exported
