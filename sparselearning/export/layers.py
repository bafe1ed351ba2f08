"""Inference layers that hold only the active weights of a sparse layer: CSR Linear, CSR Conv2d, bias-only.

Each layer keeps its compressed weight as three ordinary dense buffers (`crow_indices`, `col_indices`,
`values`) plus its shape, so `state_dict()`, `.to()`, deep copies and `torch.save` all see plain tensors;
the `torch.sparse_csr` view over them is built on first use and cached (it shares their memory).

Why the Linear computes `W @ x.T` and returns its transpose: a CSR times dense product on CPU is fastest with
the sparse matrix on the left and a dense operand whose columns are the examples. The transposed result is a
view, so a following `SparseLinear` (after an element-wise activation, which keeps strides) gets its
`x.T` already contiguous, with no copy in between. A single example goes through the matrix-vector kernel,
which is several times faster than a one-column product.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparselearning.errors import SparseLearningError, first_line


def resolve_index_dtype(index_dtype: str | torch.dtype, largest: int) -> torch.dtype:
    """The integer type of the CSR indices: "auto" is int32 whenever every index fits, else int64.

    int32 is the default because it halves the index bytes and, measured on CPU, CSR `mv` runs about 1.7x
    faster with it and `addmm` as fast or up to 1.4x faster (benchmarks/export_speed.py, docs/performance.md).
    """
    if index_dtype in ("auto", None):
        return torch.int32 if largest < 2**31 - 1 else torch.int64
    chosen = {"int32": torch.int32, "int64": torch.int64, torch.int32: torch.int32, torch.int64: torch.int64}.get(
        index_dtype
    )
    if chosen is None:
        raise SparseLearningError(f"index_dtype must be 'auto', 'int32' or 'int64', got {index_dtype!r}")
    if chosen == torch.int32 and largest >= 2**31 - 1:
        raise SparseLearningError(f"index_dtype int32 cannot index {largest} entries; use 'int64' or 'auto'")
    return chosen


def compress(matrix: torch.Tensor, index_dtype: str | torch.dtype = "auto") -> tuple[torch.Tensor, ...]:
    """`(crow_indices, col_indices, values)` of the nonzeros of a 2-D tensor, indices in `index_dtype`."""
    if matrix.dim() != 2:
        raise SparseLearningError(f"compress expects a 2-D tensor, got shape {tuple(matrix.shape)}")
    dtype = resolve_index_dtype(index_dtype, max(matrix.numel(), *matrix.shape, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = matrix.detach().to_sparse_csr()
    return csr.crow_indices().to(dtype), csr.col_indices().to(dtype), csr.values().clone()


def validate_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> None:
    """Raise `SparseLearningError` unless the components form a valid CSR matrix of `shape`.

    Files may be damaged or hostile, and CSR kernels index memory through these arrays without checking, so
    everything read from disk goes through here once.
    """
    if not values.is_floating_point() or crow.dim() != 1 or col.dim() != 1 or values.dim() != 1:
        raise SparseLearningError("CSR data must be 1-D index tensors and 1-D floating-point values")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=True)
    except (RuntimeError, ValueError, TypeError) as error:
        reason = first_line(error, limit=200)
        raise SparseLearningError(f"invalid CSR data for a {shape[0]}x{shape[1]} weight: {reason}") from None


def _int_pair(values: Sequence[int], name: str) -> tuple[int, int]:
    """`values` as a pair of ints: the 2-D convolution geometry (kernel size, stride, padding, dilation)."""
    if isinstance(values, str) or len(values) != 2:
        raise SparseLearningError(f"{name} must be two whole numbers, got {values!r}")
    return int(values[0]), int(values[1])


def _detached_bias(layer: nn.Module) -> torch.Tensor | None:
    """A layer's bias, detached, or None for a layer built with `bias=False`."""
    bias = getattr(layer, "bias", None)
    return bias.detach() if isinstance(bias, torch.Tensor) else None


def csr_view(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A `torch.sparse_csr` matrix over the given components (no copy, no invariant check: see `validate_csr`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _CompressedWeight(nn.Module):
    """Shared plumbing: the three CSR buffers, the cached CSR view, the optional bias buffer."""

    # Registered as buffers in `__init__`; declared so type checkers see tensors, not `nn.Module.__getattr__`'s
    # `Tensor | Module`.
    crow_indices: torch.Tensor
    col_indices: torch.Tensor
    values: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        crow_indices: torch.Tensor,
        col_indices: torch.Tensor,
        values: torch.Tensor,
        matrix_shape: tuple[int, int],
        bias: torch.Tensor | None,
    ) -> None:
        super().__init__()
        rows, cols = (int(size) for size in matrix_shape)
        if crow_indices.numel() != rows + 1 or col_indices.numel() != values.numel():
            raise SparseLearningError(
                f"inconsistent CSR data: {crow_indices.numel()} row pointers for {rows} rows, "
                f"{col_indices.numel()} column indices for {values.numel()} values"
            )
        if crow_indices.dtype != col_indices.dtype or crow_indices.dtype not in (torch.int32, torch.int64):
            raise SparseLearningError("CSR row and column indices must both be int32 or both int64")
        self.matrix_shape = (rows, cols)
        self.register_buffer("crow_indices", crow_indices)
        self.register_buffer("col_indices", col_indices)
        self.register_buffer("values", values)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._cached: torch.Tensor | None = None
        self._cached_key: tuple[Any, ...] = ()

    @property
    def nnz(self) -> int:
        """Number of stored (active) weights."""
        return self.values.numel()

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.matrix_shape[0] * self.matrix_shape[1])

    def csr_weight(self) -> torch.Tensor:
        """The weight as a `torch.sparse_csr` matrix (rows = output features), sharing the buffers' memory."""
        # Keyed on the buffers' memory: `.to()`, `.double()` or reassignment replace them and the view follows.
        crow, col, values = self.crow_indices, self.col_indices, self.values
        key = (crow.data_ptr(), col.data_ptr(), values.data_ptr(), values.dtype, values.device)
        if self._cached is None or self._cached_key != key:
            self._cached = csr_view(crow, col, values, self.matrix_shape)
            self._cached_key = key
        return self._cached

    @property
    def weight(self) -> torch.Tensor:
        """The weight as a `torch.sparse_csr` matrix, as `nn.Linear.weight` is the dense one (Conv2d: flattened
        to `(out_channels, in_channels * kh * kw)`)."""
        return self.csr_weight()

    def __getstate__(self) -> dict[str, Any]:
        # A CSR tensor cannot be deep-copied or pickled; the buffers can, and the view is rebuilt from them.
        state = self.__dict__.copy()
        state["_cached"] = None
        return state


class SparseLinear(_CompressedWeight):
    """`nn.Linear` with its weight in CSR form: `y = x W^T + b`, computing only the active weights."""

    def __init__(
        self,
        crow_indices: torch.Tensor,
        col_indices: torch.Tensor,
        values: torch.Tensor,
        in_features: int,
        out_features: int,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__(crow_indices, col_indices, values, (out_features, in_features), bias)
        self.in_features = int(in_features)
        self.out_features = int(out_features)

    @classmethod
    def from_dense(cls, layer: nn.Linear, index_dtype: str | torch.dtype = "auto") -> SparseLinear:
        """The CSR version of a (masked) Linear: zeros of its weight are left out."""
        crow, col, values = compress(layer.weight.detach(), index_dtype)
        return cls(crow, col, values, layer.in_features, layer.out_features, _detached_bias(layer))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.csr_weight()
        bias = self.bias
        if inputs.numel() == self.in_features:  # one example: the matrix-vector kernel is several times faster
            vector = inputs.reshape(self.in_features)
            result = torch.mv(weight, vector) if bias is None else torch.addmv(bias, weight, vector)
            return result.view(*inputs.shape[:-1], self.out_features)
        # A no-op copy when the previous layer was a SparseLinear: its output is the transpose of a product.
        columns = inputs.reshape(-1, self.in_features).t().contiguous()
        result = torch.mm(weight, columns) if bias is None else torch.addmm(bias.unsqueeze(1), weight, columns)
        return result.t().reshape(*inputs.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"nnz={self.nnz}, density={self.density:.4f}, index_dtype={str(self.col_indices.dtype).split('.')[-1]}"
        )


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one spatial dimension (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def sparse_conv_supported(layer: nn.Module) -> bool:
    """Whether a Conv2d can run as unfold + CSR matmul: one group, zero padding given as numbers."""
    return (
        type(layer) is nn.Conv2d
        and layer.groups == 1
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    )


class SparseConv2d(_CompressedWeight):
    """`nn.Conv2d` (one group, zero padding) computed as im2col (`F.unfold`) then a CSR matmul per example.

    The weight is stored as an `(out_channels, in_channels * kh * kw)` CSR matrix. One product per example is
    used because it keeps the dense operand small enough for the cache; on CPU this is faster than one product
    over the whole batch laid side by side. Whether this beats the dense convolution depends on the layer, the
    density and the batch: `to_sparse` measures both and keeps the faster one.
    """

    def __init__(
        self,
        crow_indices: torch.Tensor,
        col_indices: torch.Tensor,
        values: torch.Tensor,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        stride: Sequence[int] = (1, 1),
        padding: Sequence[int] = (0, 0),
        dilation: Sequence[int] = (1, 1),
        bias: torch.Tensor | None = None,
    ) -> None:
        kernel = _int_pair(kernel_size, "kernel_size")
        fan_in = int(in_channels) * kernel[0] * kernel[1]
        super().__init__(crow_indices, col_indices, values, (int(out_channels), fan_in), bias)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = kernel
        self.stride = _int_pair(stride, "stride")
        self.padding = _int_pair(padding, "padding")
        self.dilation = _int_pair(dilation, "dilation")

    @classmethod
    def from_dense(cls, layer: nn.Conv2d, index_dtype: str | torch.dtype = "auto") -> SparseConv2d:
        """The CSR version of a (masked) Conv2d; see `sparse_conv_supported` for which ones qualify."""
        padding = layer.padding
        # The string test repeats one of sparse_conv_supported's, so that the type checker sees numeric padding.
        if not sparse_conv_supported(layer) or isinstance(padding, str):
            raise SparseLearningError(
                "SparseConv2d needs an nn.Conv2d with groups=1, padding_mode='zeros' and numeric padding"
            )
        crow, col, values = compress(layer.weight.detach().reshape(layer.out_channels, -1), index_dtype)
        return cls(
            crow,
            col,
            values,
            layer.in_channels,
            layer.out_channels,
            kernel_size=layer.kernel_size,
            stride=layer.stride,
            padding=padding,
            dilation=layer.dilation,
            bias=_detached_bias(layer),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batched = inputs.dim() == 4
        images = inputs if batched else inputs.unsqueeze(0)
        count, _, height, width = images.shape
        out_h = conv_output_size(height, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0])
        out_w = conv_output_size(width, self.kernel_size[1], self.stride[1], self.padding[1], self.dilation[1])
        columns = F.unfold(images, self.kernel_size, self.dilation, self.padding, self.stride)
        weight = self.csr_weight()
        output = images.new_empty(count, self.out_channels, out_h * out_w)
        bias = None if self.bias is None else self.bias.unsqueeze(1)
        for index in range(count):
            if bias is None:
                output[index] = torch.mm(weight, columns[index])
            else:
                output[index] = torch.addmm(bias, weight, columns[index])
        output = output.view(count, self.out_channels, out_h, out_w)
        return output if batched else output.squeeze(0)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}, nnz={self.nnz}, "
            f"density={self.density:.4f}"
        )


class BiasOnly(nn.Module):
    """What a Linear or Conv2d with no active weight computes: its bias (zeros without one), at the right shape.

    For a convolution the output size follows the layer's geometry, so the module keeps it.
    """

    bias: torch.Tensor | None  # a buffer, registered in `__init__`

    def __init__(
        self,
        out_features: int,
        bias: torch.Tensor | None = None,
        *,
        kind: str = "linear",
        in_features: int = 0,
        kernel_size: Sequence[int] = (1, 1),
        stride: Sequence[int] = (1, 1),
        padding: Sequence[int] | str = (0, 0),
        dilation: Sequence[int] = (1, 1),
    ) -> None:
        super().__init__()
        if kind not in ("linear", "conv2d"):
            raise SparseLearningError(f"BiasOnly kind must be 'linear' or 'conv2d', got {kind!r}")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise SparseLearningError(f"BiasOnly padding must be 'same', 'valid' or two whole numbers, got {padding!r}")
        self.kind = kind
        self.out_features = int(out_features)
        self.in_features = int(in_features)
        self.kernel_size = _int_pair(kernel_size, "kernel_size")
        self.stride = _int_pair(stride, "stride")
        self.padding: tuple[int, int] | str = padding if isinstance(padding, str) else _int_pair(padding, "padding")
        self.dilation = _int_pair(dilation, "dilation")
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_dense(cls, layer: nn.Module) -> BiasOnly:
        """The bias-only replacement of an nn.Linear or nn.Conv2d whose weights are all inactive."""
        bias = _detached_bias(layer)
        if isinstance(layer, nn.Linear):
            return cls(layer.out_features, bias, kind="linear", in_features=layer.in_features)
        if type(layer) is nn.Conv2d:
            return cls(
                layer.out_channels,
                bias,
                kind="conv2d",
                in_features=layer.in_channels,
                kernel_size=layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
            )
        raise SparseLearningError(f"BiasOnly replaces nn.Linear or nn.Conv2d, not {type(layer).__name__}")

    def _spatial(self, size: int, axis: int) -> int:
        if self.padding == "same":
            return size
        padding = 0 if isinstance(self.padding, str) else self.padding[axis]  # a string here is "valid"
        return conv_output_size(size, self.kernel_size[axis], self.stride[axis], padding, self.dilation[axis])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            shape: tuple[int, ...] = (*inputs.shape[:-1], self.out_features)
            channel_view: tuple[int, ...] = (self.out_features,)
        else:
            lead = inputs.shape[:-3]
            shape = (*lead, self.out_features, self._spatial(inputs.shape[-2], 0), self._spatial(inputs.shape[-1], 1))
            channel_view = (self.out_features, 1, 1)
        output = inputs.new_zeros(shape)
        if self.bias is not None:
            output += self.bias.view(channel_view)
        return output

    def extra_repr(self) -> str:
        return f"kind={self.kind}, out_features={self.out_features}, bias={self.bias is not None}"


def sparse_attention_supported(module: nn.Module) -> str | None:
    """None when an `nn.MultiheadAttention` has a `SparseMultiheadAttention` form, else why not.

    Supported: packed or separate q/k/v projections, with or without biases, batch-first or not. Not supported:
    `add_bias_kv` and `add_zero_attn` (extra key/value rows the sparse form does not reproduce) and subclasses,
    whose forward may differ.
    """
    if type(module) is not nn.MultiheadAttention:
        return f"{type(module).__name__} is not an nn.MultiheadAttention"
    if module.bias_k is not None or module.bias_v is not None:
        return "add_bias_kv=True has no sparse form"
    if module.add_zero_attn:
        return "add_zero_attn=True has no sparse form"
    return None


def _linear_from(weight: torch.Tensor, bias: torch.Tensor | None, index_dtype: str | torch.dtype) -> SparseLinear:
    """A `SparseLinear` computing `x W^T + b` for a raw (masked) weight and bias."""
    crow, col, values = compress(weight.detach(), index_dtype)
    out_features, in_features = weight.shape
    return SparseLinear(crow, col, values, in_features, out_features, None if bias is None else bias.detach())


class SparseMultiheadAttention(nn.Module):
    """What an `nn.MultiheadAttention` computes in eval mode, with its four projections as CSR products.

    `nn.MultiheadAttention` passes its weights straight to `F.multi_head_attention_forward` (its `out_proj`'s own
    forward never runs), so replacing `out_proj` by a `SparseLinear` would change nothing, and a CSR tensor in its
    place breaks it; this module replaces the whole layer instead: q, k and v are projected by their own CSR
    matrices (the rows of a packed `in_proj_weight`), attention runs as in the dense layer (the scaled dot
    product with the same masks, or with explicit weights when `need_weights`), then the output projection.
    Dropout is left out: exported models run in eval mode.

    It exposes what `nn.TransformerEncoderLayer` reads from its `self_attn` (`batch_first`, `num_heads`,
    `_qkv_same_embed_dim`, `in_proj_weight`, `in_proj_bias`); the last three say "no packed dense projection",
    which keeps the layer off its fused dense fast path, which would read the dense weights.
    """

    def __init__(
        self,
        q_proj: SparseLinear,
        k_proj: SparseLinear,
        v_proj: SparseLinear,
        out_proj: SparseLinear,
        num_heads: int,
        *,
        batch_first: bool,
        packed: bool,
    ) -> None:
        super().__init__()
        embed_dim = out_proj.out_features
        if num_heads < 1 or embed_dim % num_heads:
            raise SparseLearningError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        shapes = [(p.out_features, p.in_features) for p in (q_proj, k_proj, v_proj, out_proj)]
        if any(rows != embed_dim for rows, _ in shapes) or shapes[0][1] != embed_dim or shapes[3][1] != embed_dim:
            raise SparseLearningError(f"attention projections of shapes {shapes} do not fit embed_dim {embed_dim}")
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        self.embed_dim = embed_dim
        self.kdim, self.vdim = k_proj.in_features, v_proj.in_features
        self.num_heads = int(num_heads)
        self.head_dim = embed_dim // self.num_heads
        self.batch_first = bool(batch_first)
        self.packed = bool(packed)  # whether the dense layer held one in_proj_weight (how it is saved)
        self.dropout = 0.0
        self._qkv_same_embed_dim = False
        self.in_proj_weight: torch.Tensor | None = None
        self.in_proj_bias: torch.Tensor | None = None

    @classmethod
    def from_dense(
        cls, layer: nn.MultiheadAttention, index_dtype: str | torch.dtype = "auto"
    ) -> SparseMultiheadAttention:
        """The sparse form of a (masked) `nn.MultiheadAttention`; see `sparse_attention_supported`."""
        reason = sparse_attention_supported(layer)
        if reason is not None:
            raise SparseLearningError(f"SparseMultiheadAttention cannot replace this layer: {reason}")
        packed = bool(layer._qkv_same_embed_dim)
        if packed:
            weights = layer.in_proj_weight.detach().chunk(3)
        else:
            weights = (layer.q_proj_weight.detach(), layer.k_proj_weight.detach(), layer.v_proj_weight.detach())
        biases = (None,) * 3 if layer.in_proj_bias is None else layer.in_proj_bias.detach().chunk(3)
        q_proj, k_proj, v_proj = (_linear_from(w, b, index_dtype) for w, b in zip(weights, biases, strict=True))
        out_proj = _linear_from(layer.out_proj.weight, layer.out_proj.bias, index_dtype)
        return cls(q_proj, k_proj, v_proj, out_proj, layer.num_heads, batch_first=layer.batch_first, packed=packed)

    def dense_state(self) -> dict[str, torch.Tensor]:
        """The state dict of the `nn.MultiheadAttention` this module computes (how the file stores it)."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        dense = [p.csr_weight().to_dense() for p in projections]
        state: dict[str, torch.Tensor] = {}
        if self.packed:
            state["in_proj_weight"] = torch.cat(dense)
        else:
            state.update(zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), dense, strict=True))
        if self.q_proj.bias is not None:
            state["in_proj_bias"] = torch.cat([p.bias for p in projections if p.bias is not None])
        state["out_proj.weight"] = self.out_proj.csr_weight().to_dense()
        if self.out_proj.bias is not None:
            state["out_proj.bias"] = self.out_proj.bias
        return state

    @staticmethod
    def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """A boolean mask (True = not allowed) as 0/-inf, a float one as it is: what the dense layer adds."""
        if mask is None or mask.is_floating_point():
            return mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batched = query.dim() == 3
        if not batched:  # one sequence: a batch of one, in (length, batch, features) layout
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        length, batch, _ = query.shape
        source = key.shape[0]
        heads, head_dim = self.num_heads, self.head_dim
        q = self.q_proj(query).reshape(length, batch * heads, head_dim).transpose(0, 1)
        k = self.k_proj(key).reshape(source, batch * heads, head_dim).transpose(0, 1)
        v = self.v_proj(value).reshape(source, batch * heads, head_dim).transpose(0, 1)
        mask = self._additive(attn_mask, q.dtype)
        if mask is None and is_causal:
            causal = torch.ones(length, source, dtype=torch.bool, device=q.device).triu(1)
            mask = self._additive(causal, q.dtype)
        padding = self._additive(key_padding_mask, q.dtype)
        if padding is not None:
            padding = padding.view(batch, 1, 1, source).expand(-1, heads, -1, -1).reshape(batch * heads, 1, source)
            mask = padding if mask is None else mask + padding
        weights: torch.Tensor | None = None
        if need_weights:
            scores = torch.bmm(q * (1.0 / head_dim) ** 0.5, k.transpose(1, 2))
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            output = torch.bmm(weights, v)
        else:
            if mask is not None and mask.dim() == 3:
                mask = mask.unsqueeze(0) if mask.shape[0] == 1 else mask.view(batch, heads, -1, source)
            q4, k4, v4 = (t.view(batch, heads, -1, head_dim) for t in (q, k, v))
            output = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask).view(batch * heads, length, head_dim)
        output = self.out_proj(output.transpose(0, 1).reshape(length * batch, self.embed_dim))
        output = output.view(length, batch, self.embed_dim)
        if weights is not None:
            weights = weights.view(batch, heads, length, source)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        if not batched:
            return output.squeeze(1), None if weights is None else weights.squeeze(0)
        return (output.transpose(0, 1) if self.batch_first else output), weights

    def extra_repr(self) -> str:
        nnz = sum(p.nnz for p in (self.q_proj, self.k_proj, self.v_proj, self.out_proj))
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}, nnz={nnz}"


#: The recurrent layers `SparseRecurrent` computes, by the `mode` PyTorch gives them, and the gates per step.
_RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def sparse_recurrent_supported(module: nn.Module) -> str | None:
    """None when an `nn.LSTM`, `nn.GRU` or `nn.RNN` has a `SparseRecurrent` form, else why not.

    Supported: any number of layers, one or two directions, batch-first or not, with or without biases. Not
    supported: an LSTM with `proj_size` (its hidden state is projected by one more matrix), and subclasses,
    whose forward may differ.
    """
    if type(module) not in (nn.LSTM, nn.GRU, nn.RNN):
        return f"{type(module).__name__} is not an nn.LSTM, nn.GRU or nn.RNN"
    assert isinstance(module, nn.RNNBase)
    if module.proj_size > 0:
        return "proj_size > 0 has no sparse form"
    return None


class SparseRecurrent(nn.Module):
    """What an `nn.LSTM`, `nn.GRU` or `nn.RNN` computes in eval mode, with its weight matrices as CSR products.

    Per layer and direction, the input products of all time steps are one CSR product; the recurrence then runs
    step by step, each step one CSR product with the recurrent matrix and the cell's element-wise gates (PyTorch's
    gate order and formulas). A step-by-step recurrence cannot use the fused dense kernel, so this only pays for
    wide, very sparse layers (benchmarks/recurrent_export.py: 2.4-5x faster at width 1024 and density <= 0.1, 1.3-6x
    slower at widths 64-256); `to_sparse` times both on the layer's real input and keeps the faster. Dropout
    between layers is left out: exported models run in eval mode. Packed sequences are not accepted.

    It returns what the dense layer returns: `(output, (h_n, c_n))` for an LSTM, `(output, h_n)` otherwise.
    """

    def __init__(
        self,
        weight_ih: Sequence[SparseLinear],
        weight_hh: Sequence[SparseLinear],
        *,
        mode: str,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        batch_first: bool,
    ) -> None:
        super().__init__()
        if mode not in _RECURRENT_GATES:
            raise SparseLearningError(
                f"SparseRecurrent mode must be one of {', '.join(_RECURRENT_GATES)}, got {mode!r}"
            )
        directions = 2 if bidirectional else 1
        count = int(num_layers) * directions
        if len(weight_ih) != count or len(weight_hh) != count:
            raise SparseLearningError(
                f"SparseRecurrent needs {count} input and recurrent matrices, got {len(weight_ih)} and {len(weight_hh)}"
            )
        rows = _RECURRENT_GATES[mode] * int(hidden_size)
        for index, (ih, hh) in enumerate(zip(weight_ih, weight_hh, strict=True)):
            expected_in = ih.in_features if index < directions else directions * int(hidden_size)
            shape_hh = (hh.out_features, hh.in_features)
            if ih.out_features != rows or ih.in_features != expected_in or shape_hh != (rows, int(hidden_size)):
                raise SparseLearningError(
                    f"recurrent matrices {index} of shapes {(ih.out_features, ih.in_features)} and "
                    f"{(hh.out_features, hh.in_features)} do not fit a {mode} of hidden size {hidden_size}"
                )
        self.weight_ih = nn.ModuleList(weight_ih)
        self.weight_hh = nn.ModuleList(weight_hh)
        self.mode = mode
        self.hidden_size = int(hidden_size)
        self.input_size = weight_ih[0].in_features
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.bias = weight_ih[0].bias is not None

    @classmethod
    def from_dense(cls, layer: nn.RNNBase, index_dtype: str | torch.dtype = "auto") -> SparseRecurrent:
        """The sparse form of a (masked) `nn.LSTM`, `nn.GRU` or `nn.RNN`; see `sparse_recurrent_supported`."""
        reason = sparse_recurrent_supported(layer)
        if reason is not None:
            raise SparseLearningError(f"SparseRecurrent cannot replace this layer: {reason}")
        weight_ih: list[SparseLinear] = []
        weight_hh: list[SparseLinear] = []
        for suffix in cls._suffixes(layer.num_layers, layer.bidirectional):
            for kind, matrices in (("ih", weight_ih), ("hh", weight_hh)):
                bias = getattr(layer, f"bias_{kind}{suffix}") if layer.bias else None
                matrices.append(_linear_from(getattr(layer, f"weight_{kind}{suffix}"), bias, index_dtype))
        return cls(
            weight_ih,
            weight_hh,
            mode=layer.mode,
            hidden_size=layer.hidden_size,
            num_layers=layer.num_layers,
            bidirectional=layer.bidirectional,
            batch_first=layer.batch_first,
        )

    @staticmethod
    def _suffixes(num_layers: int, bidirectional: bool) -> list[str]:
        """PyTorch's parameter-name suffixes, layer by layer, forward direction first."""
        directions = ("", "_reverse") if bidirectional else ("",)
        return [f"_l{layer}{direction}" for layer in range(num_layers) for direction in directions]

    def dense_state(self) -> dict[str, torch.Tensor]:
        """The state dict of the dense recurrent layer this module computes (how the file stores it)."""
        state: dict[str, torch.Tensor] = {}
        suffixes = self._suffixes(self.num_layers, self.bidirectional)
        for suffix, ih, hh in zip(suffixes, self.weight_ih, self.weight_hh, strict=True):
            for kind, linear in (("ih", ih), ("hh", hh)):
                assert isinstance(linear, SparseLinear)
                state[f"weight_{kind}{suffix}"] = linear.csr_weight().to_dense()
                if linear.bias is not None:
                    state[f"bias_{kind}{suffix}"] = linear.bias
        return state

    def _step(
        self, gates_in: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, recurrent: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One time step of the cell: the new hidden state (and, for an LSTM, the new cell state)."""
        gates_h = recurrent(h)
        if self.mode == "LSTM":
            assert c is not None
            i, f, g, o = (gates_in + gates_h).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        if self.mode == "GRU":
            x_r, x_z, x_n = gates_in.chunk(3, dim=1)
            h_r, h_z, h_n = gates_h.chunk(3, dim=1)
            reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            new = torch.tanh(x_n + reset * h_n)
            return new + update * (h - new), None
        pre = gates_in + gates_h
        return (torch.tanh(pre) if self.mode == "RNN_TANH" else torch.relu(pre)), None

    def forward(
        self, inputs: torch.Tensor, hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, Any]:
        if not isinstance(inputs, torch.Tensor):
            raise SparseLearningError(
                f"SparseRecurrent takes a tensor, not a {type(inputs).__name__} (packed sequence)"
            )
        lstm = self.mode == "LSTM"
        batched = inputs.dim() == 3
        if not batched:  # one sequence: a batch of one, in (length, batch, features) layout
            inputs = inputs.unsqueeze(1)
        elif self.batch_first:
            inputs = inputs.transpose(0, 1)
        steps, batch, _ = inputs.shape
        directions = 2 if self.bidirectional else 1
        shape = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            h0 = inputs.new_zeros(shape)
            c0 = inputs.new_zeros(shape) if lstm else None
        else:
            h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
            if (c0 is None) == lstm:
                raise SparseLearningError("an LSTM's initial state is (h_0, c_0); a GRU's or RNN's is h_0 alone")
            if not batched:
                h0, c0 = h0.unsqueeze(1), None if c0 is None else c0.unsqueeze(1)
        layer_input = inputs
        last_h: list[torch.Tensor] = []
        last_c: list[torch.Tensor] = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                flat = layer_input.reshape(steps * batch, -1)
                gates_in = self.weight_ih[index](flat).reshape(steps, batch, -1)
                h, c = h0[index], None if c0 is None else c0[index]
                per_step: list[torch.Tensor] = [h] * steps
                for step in reversed(range(steps)) if direction else range(steps):
                    h, c = self._step(gates_in[step], h, c, self.weight_hh[index])
                    per_step[step] = h
                outputs.append(torch.stack(per_step))
                last_h.append(h)
                if c is not None:
                    last_c.append(c)
            layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
        output, h_n = layer_input, torch.stack(last_h)
        c_n = torch.stack(last_c) if lstm else None
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h_n, c_n) if lstm else h_n)

    def extra_repr(self) -> str:
        nnz = sum(m.nnz for m in [*self.weight_ih, *self.weight_hh] if isinstance(m, SparseLinear))
        return (
            f"mode={self.mode}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, batch_first={self.batch_first}, "
            f"bias={self.bias}, nnz={nnz}"
        )


def constant_fan_in(weight: torch.Tensor) -> int | None:
    """The number k of nonzeros every non-empty row of a 2-D weight holds, or None when rows differ (or all are
    empty). Empty rows are ablated neurons (SRigL), which compute only their bias."""
    counts = (weight.detach() != 0).sum(dim=1)
    nonempty = counts[counts > 0]
    if nonempty.numel() == 0 or not bool((nonempty == nonempty[0]).all()):
        return None
    return int(nonempty[0])


def validate_condensed(weight: torch.Tensor, indices: torch.Tensor, in_features: int) -> None:
    """Raise `SparseLearningError` unless `indices` is a valid index table for `weight` over `in_features` inputs.

    The gather kernels read memory through the table without checking it, so a table read from a file goes
    through here once: an int32/int64 tensor of the weight's 2-D shape, every entry in [0, in_features).
    """
    if weight.dim() != 2 or not weight.is_floating_point():
        raise SparseLearningError(f"condensed weight must be a 2-D floating-point tensor, got {tuple(weight.shape)}")
    if indices.dtype not in (torch.int32, torch.int64) or indices.layout != torch.strided:
        raise SparseLearningError(f"condensed index table must be a dense int32 or int64 tensor, got {indices.dtype}")
    if tuple(indices.shape) != tuple(weight.shape):
        raise SparseLearningError(
            f"condensed index table has shape {tuple(indices.shape)}, its weight has {tuple(weight.shape)}"
        )
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= in_features):
        raise SparseLearningError(
            f"condensed index table holds {int(indices.min())}..{int(indices.max())}, "
            f"allowed 0..{in_features - 1} for {in_features} inputs"
        )


class CondensedLinear(nn.Module):
    """A constant fan-in `nn.Linear` (every neuron reads the same number k of inputs) as a dense (out, k) weight
    and an (out, k) table of the inputs each neuron reads: `y[b, o] = sum_j W[o, j] * x[b, idx[o, j]] + bias[o]`.

    Ablated neurons (no active input) hold k zero weights reading input 0, so they output their bias; they stay
    in the layer because removing them would change the next layer's inputs, which this layer cannot see.
    How it computes, the fastest of the formulations measured on CPU (one thread, 90% sparsity: gather then
    multiply-sum, einsum, bmm, `embedding_bag`): one example gathers its k inputs per neuron with `index_select`
    and sums the products (1.5x dense for a 2048x2048 layer, slower than dense or CSR for small ones); a batch
    runs `embedding_bag` over the transposed input, each neuron a bag of k weighted rows (4-7x dense at batch
    64), where gathering a (batch, out, k) copy ran 10-20x slower than dense. `to_sparse` keeps it only where
    timed faster than dense and CSR; `benchmarks/export_speed.py --condensed-only` races it in whole models.
    """

    weight: torch.Tensor
    indices: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self, weight: torch.Tensor, indices: torch.Tensor, in_features: int, bias: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        validate_condensed(weight, indices, int(in_features))
        self.in_features = int(in_features)
        self.out_features = int(weight.shape[0])
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("indices", indices.detach().to(torch.int64).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @property
    def fan_in(self) -> int:
        """k: the active inputs of each (non-ablated) neuron."""
        return int(self.weight.shape[1])

    @classmethod
    def from_dense(cls, layer: nn.Linear) -> CondensedLinear:
        """The condensed form of a (masked) Linear whose non-empty rows all hold k nonzeros."""
        weight = layer.weight.detach()
        k = constant_fan_in(weight)
        if k is None:
            raise SparseLearningError("a condensed layer needs the same number of active inputs in every neuron")
        active = weight != 0
        # Active positions first, in input order (a stable sort keeps that order); ablated rows read input 0.
        order = torch.sort(active.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k]
        indices = torch.where(active.gather(1, order), order, torch.zeros_like(order))
        return cls(weight.gather(1, indices), indices, layer.in_features, _detached_bias(layer))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.numel() == self.in_features:  # one example: gather, multiply, sum
            gathered = torch.index_select(inputs.reshape(self.in_features), 0, self.indices.view(-1))
            result = gathered.view_as(self.weight).mul_(self.weight).sum(dim=1)
            if self.bias is not None:
                result = result.add_(self.bias)
            return result.view(*inputs.shape[:-1], self.out_features)
        table = inputs.reshape(-1, self.in_features).t().contiguous()  # (in, batch): each input one "embedding"
        result = F.embedding_bag(self.indices, table, per_sample_weights=self.weight, mode="sum")  # (out, batch)
        if self.bias is not None:
            result = result.add_(self.bias.unsqueeze(1))
        return result.t().reshape(*inputs.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, fan_in={self.fan_in}, "
            f"bias={self.bias is not None}"
        )
