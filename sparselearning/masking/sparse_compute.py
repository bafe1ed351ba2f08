"""A truly sparse training step for masked `nn.Linear` layers on CPU (`Masking(sparse_compute=...)`).

Masked training multiplies dense matrices that are mostly zeros. Here a masked Linear layer computes only with
its active weights:

- forward: `y = x W^T + b` with `W` compressed to CSR from the mask (`torch.sparse.mm`);
- input gradient: `g W` with the CSR of `W^T` (the same values, gathered in transposed order);
- weight gradient: only at active positions, `sum_batch g[:, i] * x[:, j]` for every active `(i, j)`
  (`torch.sparse.sampled_addmm`), written into a dense `.grad` that is zero elsewhere, so the optimizer,
  gradient clipping, checkpoints and DDP see a tensor shaped and placed as with masked training.

The weight gradient is computed densely instead whenever the coming `Masking.step()` needs it: on the steps at
which masks are updated (RigL grows where the dense gradient is largest; masked training leaves `.grad` dense
on those steps too) and under `dense_gradients` (SNFS keeps dense momentum). Weights, masks and optimizer state
are the ones masked training holds; only the summation order of the products differs (results agree to float
rounding).

How it is installed: the layer's `forward` is replaced on the instance (the class, its `state_dict` and
`type(layer).forward` are untouched, so export and checkpoints see a plain `nn.Linear`). A deep copy or a
pickle of the model gets the plain forward back. The CSR structure is rebuilt lazily whenever the mask tensor
changes (a new tensor or an in-place edit), so mask updates and restores need no call.

Where it does not apply the layer keeps the dense masked path, and the reason is logged once: weights not owned
by an `nn.Linear` (exactly that class: subclasses may compute differently), tied or shared weights, weights
under a parametrization, tensors off the CPU or not float32/float64, and autocast regions. Inside a dispatch
mode (FLOPs counting, tracing) every layer runs the plain product, which such modes know how to read.

`Masking.update_connections()` called by hand (not through `step()` on the schedule) after a backward whose
weight gradients were computed at active positions only is refused in one line when its rules read gradients
(RigL's growth): `step()` knows from `update_frequency` when to compute them densely, a hand-made call does not.

`sparse_compute="auto"` times, per layer, the sparse against the dense forward and backward on the first
training batch (three alternating repetitions each, median) and keeps that choice for the rest of the run: RigL
and SET keep each layer's active count, so what was faster stays faster; it is logged per layer.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from sparselearning.errors import SparseLearningError
from sparselearning.masking.observers import MaskObserver
from sparselearning.masking.records import MaskedParameter
from sparselearning.masking.topology import TopologyChange

log = logging.getLogger(__name__)
# torch notes once per process that its CSR support is "in beta"; the kernels used here are the stable ones.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)

AUTO = "auto"
SparseComputeMode = bool | str
SUPPORTED_DTYPES = (torch.float32, torch.float64)
AUTO_REPEATS = 3
# Rules that never read `.grad` (an update that runs one of the others needs dense weight gradients).
GRADIENT_FREE = {
    "prune_mode": frozenset({"magnitude", "global-magnitude", "struct-magnitude-mean", "struct-magnitude-max"}),
    "growth_mode": frozenset({"momentum", "random", "none"}),
    "redistribution_mode": frozenset({"momentum", "nonzero", "none"}),
}


def check_sparse_compute(value: object) -> SparseComputeMode:
    """`value` if it is a valid `sparse_compute` setting (True, False or "auto"), else one line saying so."""
    if isinstance(value, bool) or value == AUTO:
        return value
    raise SparseLearningError(f"sparse_compute must be true, false or 'auto', got {value!r}")


@dataclass(frozen=True)
class Pattern:
    """The CSR structure of a mask shaped (out, in), and of its transpose, with where each value sits in the
    flattened weight (`flat`, in CSR order; `flat_t`, in the transpose's CSR order)."""

    shape: tuple[int, int]
    crow: torch.Tensor
    col: torch.Tensor
    flat: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    flat_t: torch.Tensor

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> Pattern:
        """Build the structure of a 2-D bool mask (row-major order is CSR order)."""
        rows, cols = mask.shape
        zero = torch.zeros(1, dtype=torch.int64, device=mask.device)
        flat = mask.reshape(-1).nonzero().squeeze(1)
        crow = torch.cat([zero, mask.sum(1, dtype=torch.int64).cumsum(0)])
        in_transpose = mask.t().contiguous().reshape(-1).nonzero().squeeze(1)  # positions in W^T, row-major
        flat_t = (in_transpose % rows) * cols + in_transpose // rows
        crow_t = torch.cat([zero, mask.sum(0, dtype=torch.int64).cumsum(0)])
        return cls((rows, cols), crow, flat % cols, flat, crow_t, in_transpose % rows, flat_t)

    @property
    def nnz(self) -> int:
        return int(self.flat.numel())

    def csr(self, flat_weight: torch.Tensor) -> torch.Tensor:
        """The weight as CSR (values gathered from the flattened weight)."""
        values = flat_weight.index_select(0, self.flat)
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def csr_t(self, flat_weight: torch.Tensor) -> torch.Tensor:
        """The transposed weight as CSR."""
        values = flat_weight.index_select(0, self.flat_t)
        shape = (self.shape[1], self.shape[0])
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, values, shape, check_invariants=False)


def sparse_linear_forward(x2: torch.Tensor, weight: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """`x2 @ W^T` for 2-D `x2`, with only the active weights: (batch, out)."""
    csr = pattern.csr(weight.detach().reshape(-1))
    return torch.sparse.mm(csr, x2.t()).t()


def sparse_input_grad(grad2: torch.Tensor, weight: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """`grad2 @ W` with only the active weights: (batch, in)."""
    csr_t = pattern.csr_t(weight.detach().reshape(-1))
    return torch.sparse.mm(csr_t, grad2.t()).t()


def sampled_weight_grad(grad2: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """`grad2^T @ x2` at the active positions only, as a dense tensor that is exactly zero elsewhere."""
    template = pattern.csr(weight.detach().reshape(-1))  # its values are ignored (beta=0)
    sampled = torch.sparse.sampled_addmm(template, grad2.t(), x2, beta=0.0, alpha=1.0)
    dense = torch.zeros(weight.numel(), dtype=grad2.dtype, device=grad2.device)
    dense.index_copy_(0, pattern.flat, sampled.values())
    return dense.view(weight.shape)


class SparseLinearFunction(torch.autograd.Function):
    """`F.linear` computed with the active weights only; see the module docstring for the gradients."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        pattern: Pattern,
        dense_weight_grad: bool,
    ) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        y = sparse_linear_forward(x2, weight, pattern)
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x2, weight)
        ctx.pattern = pattern
        ctx.dense_weight_grad = dense_weight_grad
        ctx.input_shape = x.shape
        return y.reshape(*x.shape[:-1], pattern.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, weight = ctx.saved_tensors
        pattern: Pattern = ctx.pattern
        grad2 = grad.reshape(-1, pattern.shape[0])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = sparse_input_grad(grad2, weight, pattern).reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_w = grad2.t().mm(x2) if ctx.dense_weight_grad else sampled_weight_grad(grad2, x2, weight, pattern)
        if ctx.needs_input_grad[2]:
            grad_b = grad2.sum(0)
        return grad_x, grad_w, grad_b, None, None


def sparse_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pattern: Pattern, dense_weight_grad: bool
) -> torch.Tensor:
    """`F.linear(x, weight, bias)` for a weight that is zero outside `pattern`, computed sparsely."""
    if not torch.is_grad_enabled() or not (weight.requires_grad or x.requires_grad):
        y = sparse_linear_forward(x.reshape(-1, x.shape[-1]), weight, pattern)
        y = y if bias is None else y + bias
        return y.reshape(*x.shape[:-1], pattern.shape[0])
    out: torch.Tensor = SparseLinearFunction.apply(x, weight, bias, pattern, dense_weight_grad)
    return out


def why_not_sparse(record: MaskedParameter) -> str | None:
    """Why a masked weight cannot be computed sparsely (None: it can)."""
    if len(record.owners) > 1:
        return "tied or shared weight"
    holding = record.owners[0]
    if type(holding.module) is not nn.Linear:
        return f"not an nn.Linear ({type(holding.module).__name__})"
    if holding.attribute != "weight":
        return f"not the layer's weight ({holding.attribute})"
    if torch.nn.utils.parametrize.is_parametrized(holding.module):
        return "under a parametrization"
    return _why_not_now(record.parameter, None)


def _why_not_now(weight: torch.Tensor, x: torch.Tensor | None) -> str | None:
    """Reasons that can change while training: device, autocast, dtype."""
    if torch.is_autocast_enabled("cpu"):
        return "inside autocast"
    if weight.device.type != "cpu" or (x is not None and x.device.type != "cpu"):
        return f"on {weight.device.type if weight.device.type != 'cpu' else x.device.type} (CPU only)"  # type: ignore[union-attr]
    if weight.dtype not in SUPPORTED_DTYPES or (x is not None and x.dtype != weight.dtype):
        return f"dtype {weight.dtype if x is None else x.dtype} (float32 and float64 only)"
    return None


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_layer(
    x2: torch.Tensor, weight: torch.Tensor, pattern: Pattern, repeats: int = AUTO_REPEATS
) -> tuple[float, float]:
    """Milliseconds of one forward and backward (input and sampled weight gradient) of a Linear layer, (sparse,
    dense), on input `x2`, alternating the two `repeats` times after one warm-up each; medians."""
    w = weight.detach()
    grad2 = torch.randn(x2.shape[0], w.shape[0], dtype=w.dtype)

    def sparse() -> None:
        sparse_linear_forward(x2, w, pattern)
        sparse_input_grad(grad2, w, pattern)
        sampled_weight_grad(grad2, x2, w, pattern)

    def dense() -> None:
        x2.mm(w.t())
        grad2.mm(w)
        grad2.t().mm(x2)

    sparse_times, dense_times = [], []
    with torch.no_grad():
        sparse()
        dense()
        for _ in range(repeats):
            sparse_times.append(_median_ms(sparse, 1))
            dense_times.append(_median_ms(dense, 1))
    return statistics.median(sparse_times), statistics.median(dense_times)


class SparseForward:
    """What replaces a Linear layer's `forward`: the sparse product while the layer is masked and on the CPU,
    the layer's own forward otherwise. Copies and pickles of the model get the layer's own forward back."""

    def __init__(self, compute: SparseCompute, name: str, module: nn.Linear):
        self.compute = compute
        self.name = name
        self.module = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.compute.forward(self.name, self.module, x)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        copied = memo.get(id(self.module))
        return PlainForward(copied) if copied is not None else self

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlainForward, (self.module,))


class PlainForward:
    """The class's own forward, for a copied layer (a deep copy or unpickled model is not trained sparsely)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return type(self.module).forward(self.module, *args, **kwargs)


@dataclass
class _Layer:
    module: nn.Linear
    pattern: Pattern | None = None
    mask: torch.Tensor | None = None  # the mask the pattern was built from (held: its id cannot be reused)
    version: int = -1  # and its version counter then
    sparse: bool | None = None  # None: not decided yet ("auto")
    sampled_at: int | None = None  # the step whose gradient was last computed at active positions only
    fallback: str | None = None  # why the layer is computed densely now (logged once)


class SparseCompute(MaskObserver):
    """Installs and runs sparse compute for the masked Linear layers of one `Masking` (it is one of its observers,
    so `forget` uninstalls a layer that stops being masked; the state in checkpoints is untouched).

    :param records: the Masking's records by weight name (read live: a forgotten layer computes densely)
    :param mode: True (every eligible layer) or "auto" (timed per layer on the first training batch)
    :param dense_weight_grad: whether the coming step needs the dense weight gradient (a mask update or
        dense gradients)
    :param current_step: the Masking's step counter (`mask_step`)
    """

    def __init__(
        self,
        records: Mapping[str, MaskedParameter],
        mode: SparseComputeMode,
        dense_weight_grad: Callable[[], bool],
        current_step: Callable[[], int],
    ):
        self.records = records
        self.mode = check_sparse_compute(mode)
        self.dense_weight_grad = dense_weight_grad
        self.current_step = current_step
        self.layers: dict[str, _Layer] = {}
        self.dense_reasons: dict[str, str] = {}

    def install(self) -> None:
        """Replace the forward of every eligible layer; log once which layers stay on the dense masked path."""
        for name, record in self.records.items():
            reason = why_not_sparse(record)
            if reason is not None:
                self.dense_reasons[name] = reason
                continue
            module = record.owners[0].module
            assert isinstance(module, nn.Linear)
            self.layers[name] = _Layer(module, sparse=True if self.mode is True else None)
            module.forward = SparseForward(self, name, module)  # type: ignore[method-assign,assignment]
        if self.dense_reasons:
            reasons = ", ".join(f"{name} ({why})" for name, why in self.dense_reasons.items())
            log.warning("sparse_compute: %d layers stay on the dense masked path: %s", len(self.dense_reasons), reasons)
        log.info("sparse_compute=%s on %d Linear layers: %s", self.mode, len(self.layers), ", ".join(self.layers))

    def uninstall(self, name: str) -> None:
        """Give layer `name` its own forward back."""
        layer = self.layers.pop(name, None)
        if layer is not None and isinstance(layer.module.__dict__.get("forward"), SparseForward):
            del layer.module.forward

    def forget(self, name: str) -> None:
        self.uninstall(name)

    def pattern(self, name: str, layer: _Layer) -> Pattern:
        """The CSR structure of the layer's current mask (rebuilt when the mask tensor changed)."""
        mask = self.records[name].mask
        if layer.pattern is None or layer.mask is not mask or layer.version != mask._version:
            layer.pattern = Pattern.from_mask(mask)
            layer.mask, layer.version = mask, mask._version
        return layer.pattern

    def _drop_patterns(self) -> None:
        for layer in self.layers.values():
            layer.pattern, layer.mask = None, None

    def after_update(self, change: TopologyChange) -> None:
        self._drop_patterns()

    def after_restore(self, masks: Mapping[str, torch.Tensor], step: int, saved: Any) -> None:
        self._drop_patterns()

    def forward(self, name: str, module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """The layer's output: sparse when it applies, the plain masked product otherwise."""
        layer = self.layers.get(name)
        record = self.records.get(name)
        if layer is None or record is None or record.inactive == 0 or _get_current_dispatch_mode() is not None:
            # A dispatch mode (FLOPs counting, tracing) sees the plain product it knows how to read.
            return F.linear(x, module.weight, module.bias)
        reason = _why_not_now(module.weight, x)
        if reason is not None:
            if layer.fallback != reason:
                layer.fallback = reason
                log.warning("sparse_compute: %s computes densely (%s)", name, reason)
            return F.linear(x, module.weight, module.bias)
        pattern = self.pattern(name, layer)
        if layer.sparse is None:
            if not torch.is_grad_enabled():
                return sparse_linear(x, module.weight, module.bias, pattern, False)
            sparse_ms, dense_ms = time_layer(x.detach().reshape(-1, x.shape[-1]), module.weight, pattern)
            layer.sparse = sparse_ms < dense_ms
            log.info(
                "sparse_compute=auto: %s computes %s (sparse %.2f ms, dense %.2f ms per forward and backward)",
                name,
                "sparsely" if layer.sparse else "densely",
                sparse_ms,
                dense_ms,
            )
        if not layer.sparse:
            return F.linear(x, module.weight, module.bias)
        dense_weight_grad = self.dense_weight_grad()
        if not dense_weight_grad and torch.is_grad_enabled() and module.weight.requires_grad:
            layer.sampled_at = self.current_step()
        return sparse_linear(x, module.weight, module.bias, pattern, dense_weight_grad)

    def refuse_sampled_gradients(self, rules: Mapping[str, str]) -> None:
        """Raise before an update whose rules read `.grad` when this step's weight gradients were computed at
        active positions only: `update_connections()` called by hand, where `step()` would have known (from
        `update_frequency`) to compute them densely. `rules`: the Masking's prune, growth and redistribution modes.
        """
        reading = [f"{key}={mode!r}" for key, mode in rules.items() if mode not in GRADIENT_FREE.get(key, ())]
        step = self.current_step()
        sampled = [name for name, layer in self.layers.items() if layer.sampled_at == step]
        if reading and sampled:
            raise SparseLearningError(
                f"sparse_compute computed this step's gradients of {', '.join(sampled)} at active positions only, "
                f"but {', '.join(reading)} reads dense gradients: set update_frequency so that masking.step() runs "
                "the update (it computes them densely then), or use sparse_compute=False"
            )

    def choices(self) -> dict[str, bool | None]:
        """Per installed layer: True sparse, False dense, None not decided yet (auto before the first batch)."""
        return {name: layer.sparse for name, layer in self.layers.items()}
