"""`to_sparse`: a copy of a masked model in which sparse layers compute only their active weights.

What each masked layer becomes, and why:

- nn.Linear: a `SparseLinear` (CSR weight). Measured on CPU, the CSR product beats the dense one from 90%
  sparsity on (1.8x to 48x for a 4096-4096-4096-10 MLP), except for small layers at batch 1, where fixed
  per-call costs dominate (LeNet-300-100 ran at 0.75-0.92x of dense there); the file is 5-50x smaller.
- nn.Conv2d: a `SparseConv2d` (unfold + CSR matmul) only where it is measured to be faster than the dense
  convolution on the activations the layer really sees (`example_input`), because unfolding costs more than
  the dense convolution itself for many layers and batch sizes. Without `example_input` a convolution becomes
  sparse only at or below `CONV_DENSITY_THRESHOLD` (see docs/performance.md for the measurement behind it).
- A layer whose mask keeps every weight stays the dense layer it was; one that keeps none becomes a
  `BiasOnly` module.
- Every other masked layer (other convolutions, grouped ones) stays dense, with the mask multiplied into it.

Masks are always multiplied into the weights first, so the exported model computes what the masked model did.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sparselearning.core import MASKABLE_TYPES, Masking, unwrap_model
from sparselearning.errors import SparseLearningError, first_line
from sparselearning.export.layers import BiasOnly, SparseConv2d, SparseLinear, sparse_conv_supported
from sparselearning.export.semi_structured import require_semi_structured, to_semi_structured_

#: Without `example_input`, a Conv2d becomes a SparseConv2d only at or below this density. Measured on a 2-core
#: CPU (docs/performance.md, benchmarks/export_speed.py): at 1% density and batch 1, unfold + CSR beat the dense
#: convolution 1.7-1.9x for three of four layers, and at batch 64 it ran at 0.5-1.2x for those three; the layer
#: with the largest activations lost 2-2.5x at every density and batch. No density makes it win everywhere,
#: since unfolding alone can cost more than the dense convolution, so the fallback only goes sparse where the
#: batch-1 gain is large; `example_input` gives a measured choice per layer instead.
CONV_DENSITY_THRESHOLD = 0.01

MaskSource = Masking | Mapping[str, torch.Tensor] | None


@dataclass(frozen=True)
class LayerDecision:
    """What `to_sparse` did with one masked layer, and why."""

    name: str  # module path in the model
    kind: str  # "csr_linear", "csr_conv", "dense", "bias_only" or "semi_structured"
    density: float  # share of the layer's weights that are nonzero after masking
    reason: str
    dense_ms: float | None = None  # measured time of the dense layer on its example activations
    sparse_ms: float | None = None  # measured time of the sparse candidate


def _module_masks(model: nn.Module, masking: MaskSource) -> dict[str, torch.Tensor]:
    """Masks keyed by module path; without masks, every Linear/conv weight is masked where it is nonzero."""
    modules = dict(model.named_modules())
    if masking is None:
        return {
            path: weight.detach() != 0
            for path, module in modules.items()
            if isinstance(module, MASKABLE_TYPES)
            and isinstance(weight := getattr(module, "weight", None), torch.Tensor)
        }
    if isinstance(masking, Masking):
        raw: Mapping[str, torch.Tensor] = masking.mask_dict
    elif isinstance(masking, Mapping):
        raw = masking
    else:
        raise SparseLearningError(f"masking must be a Masking, a dict of masks or None, got {type(masking).__name__}")
    masks: dict[str, torch.Tensor] = {}
    for name, mask in raw.items():
        path, weight = _masked_weight(modules, name, type(model).__name__)
        masks[path] = _checked_mask(name, mask, weight)
    return masks


def _masked_weight(modules: Mapping[str, nn.Module], name: object, model_name: str) -> tuple[str, torch.Tensor]:
    """The module path and weight a mask name (`"fc.weight"`, a module path, or `"weight"`) refers to."""
    if not isinstance(name, str):
        raise SparseLearningError(f"mask {name!r} is not named by a string; masks are keyed by weight name")
    path = name[: -len(".weight")] if name.endswith(".weight") else ("" if name == "weight" else name)
    weight = getattr(modules.get(path), "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise SparseLearningError(f"mask {name!r} names no layer with a weight in {model_name}")
    return path, weight


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


def _capture_inputs(model: nn.Module, paths: list[str], example_input: torch.Tensor | tuple) -> dict[str, torch.Tensor]:
    """The activation each of `paths` receives when the model runs on `example_input` (first call only)."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for path in paths:

        def hook(_module: nn.Module, inputs: tuple, _path: str = path) -> None:
            if _path not in captured and inputs and isinstance(inputs[0], torch.Tensor):
                captured[_path] = inputs[0].detach()

        handles.append(model.get_submodule(path).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            arguments = example_input if isinstance(example_input, tuple) else (example_input,)
            model(*arguments)
    except Exception as error:
        raise SparseLearningError(f"the model cannot run on example_input: {first_line(error)}") from None
    finally:
        for handle in handles:
            handle.remove()
    return captured


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


def to_sparse_with_report(
    model: nn.Module,
    masking: MaskSource = None,
    *,
    example_input: torch.Tensor | tuple | None = None,
    index_dtype: str | torch.dtype = "auto",
    semi_structured: bool = False,
    conv_density_threshold: float = CONV_DENSITY_THRESHOLD,
) -> tuple[nn.Module, list[LayerDecision]]:
    """`to_sparse`, also returning what was decided for each masked layer (with the timings measured)."""
    source = unwrap_model(model)
    masks = _module_masks(source, masking)
    exported = copy.deepcopy(source).eval()
    if semi_structured:
        first = next(exported.parameters(), None)
        require_semi_structured(torch.device("cpu") if first is None else first.device)
    layers = dict(exported.named_modules())
    with torch.no_grad():
        for path, mask in masks.items():
            layers[path].weight.mul_(mask)
    conv_paths = [
        path
        for path, mask in masks.items()
        if sparse_conv_supported(layers[path]) and not bool(mask.all()) and bool(layers[path].weight.any())
    ]
    activations: dict[str, torch.Tensor] = {}
    if example_input is not None and conv_paths:
        activations = _capture_inputs(exported, conv_paths, example_input)

    decisions: list[LayerDecision] = []
    for path, mask in masks.items():
        layer = layers[path]
        nonzero = int(layer.weight.count_nonzero())
        density = nonzero / max(1, layer.weight.numel())
        replacement: nn.Module = layer
        if bool(mask.all()):
            decision = LayerDecision(path, "dense", density, "mask keeps every weight")
        elif nonzero == 0 and (isinstance(layer, nn.Linear) or type(layer) is nn.Conv2d):
            replacement = BiasOnly.from_dense(layer)
            decision = LayerDecision(path, "bias_only", 0.0, "no active weight")
        elif isinstance(layer, nn.Linear) and semi_structured:
            converted = to_semi_structured_(layer)
            reason = "2:4 kernel" if converted else "shape or dtype unsupported by the 2:4 kernels"
            decision = LayerDecision(path, "semi_structured" if converted else "dense", density, reason)
        elif isinstance(layer, nn.Linear):
            replacement = SparseLinear.from_dense(layer, index_dtype)
            decision = LayerDecision(path, "csr_linear", density, "masked Linear")
        elif type(layer) is nn.Conv2d:
            replacement, decision = _decide_conv(
                path, layer, density, activations.get(path), index_dtype, conv_density_threshold
            )
        else:
            decision = LayerDecision(path, "dense", density, f"no sparse kernel for {type(layer).__name__}")
        if replacement is not layer:
            exported = replace_module(exported, path, replacement)
        decisions.append(decision)
    return exported.eval(), decisions


def to_sparse(
    model: nn.Module,
    masking: MaskSource = None,
    *,
    example_input: torch.Tensor | tuple | None = None,
    index_dtype: str | torch.dtype = "auto",
    semi_structured: bool = False,
    conv_density_threshold: float = CONV_DENSITY_THRESHOLD,
) -> nn.Module:
    """A copy of `model` for inference in which masked layers store and compute only their active weights.

    The input model is never modified. The copy is in eval mode and, on the same inputs, returns what the
    masked model returns (up to float summation order).

    :param model: the trained model (bare or DDP-wrapped)
    :param masking: its `Masking`, or masks by weight name (`"fc.weight"`) or module path; None treats every
        zero weight of every Linear/conv layer as masked
    :param example_input: a batch as the model will see it in use; each Conv2d is timed dense and sparse on
        the activations it receives and the faster kept. Without it, `conv_density_threshold` decides
    :param index_dtype: "auto" (int32 where indices fit: faster and smaller), "int32" or "int64"
    :param semi_structured: turn 2:4-masked Linear layers into 2:4 semi-structured ones (CUDA, compute
        capability >= 8.0, fp16/bf16 weights); raises `SparseLearningError` where that is impossible
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
