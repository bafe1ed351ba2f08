"""2:4 (N:M) semi-structured sparsity: a pruning helper and the CUDA-only conversion of Linear layers.

Ampere and newer NVIDIA GPUs multiply matrices in which every group of 4 consecutive weights along the input
dimension holds at most 2 nonzeros with dedicated hardware (sparse tensor cores), through
`torch.sparse.to_sparse_semi_structured`. Unlike CSR this pays off at only 50% sparsity, for large fp16/bf16
matmuls. There is no CPU kernel, so on CPU the conversion raises a `SparseLearningError` saying so.
"""

from __future__ import annotations

import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.funcs import n_m

#: Both backends (CUTLASS and cuSPARSELt) accept a sparse matrix whose two sides are multiples of this.
SHAPE_MULTIPLE = 64
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16)


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Bool mask keeping the `n` largest-magnitude weights of every `m` consecutive input weights.

    Groups run along the last dimension of the weight flattened to `(out, fan_in)`, which is the layout the
    sparse tensor cores expect for a Linear's `(out_features, in_features)` weight. Ties keep the earlier
    position, so the result is deterministic. `fan_in` must be a multiple of `m`.
    """
    if not (isinstance(n, int) and isinstance(m, int)) or not 0 < n <= m:
        raise SparseLearningError(f"nm_mask needs whole numbers 0 < n <= m, got n={n!r}, m={m!r}")
    if weight.dim() < 2:
        raise SparseLearningError(f"nm_mask needs a weight with at least 2 dimensions, got {tuple(weight.shape)}")
    fan_in = weight[0].numel()
    if fan_in % m:
        raise SparseLearningError(f"nm_mask: the fan-in {fan_in} is not a multiple of m={m}")
    return n_m.nm_mask(weight, n, m)  # the rule N:M training uses (`sparselearning.funcs.n_m`)


def is_nm_sparse(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """Whether every group of `m` consecutive input weights has at most `n` nonzeros."""
    fan_in = weight[0].numel() if weight.dim() >= 2 else 0
    if weight.dim() < 2 or fan_in % m:
        return False
    counts = (weight.detach().reshape(weight.shape[0], fan_in // m, m) != 0).sum(dim=-1)
    return bool((counts <= n).all())


def semi_structured_unavailable(device: torch.device | str | None = None) -> str | None:
    """None when 2:4 kernels can run on `device` (default: the current CUDA device), else the reason why not."""
    if not torch.cuda.is_available():
        return "no CUDA GPU is available (2:4 semi-structured kernels exist only for NVIDIA GPUs)"
    target = torch.device("cuda") if device is None else torch.device(device)
    if target.type != "cuda":
        return f"the model is on {target}, and 2:4 semi-structured kernels need it on a CUDA GPU"
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return f"torch {torch.__version__} has no torch.sparse.to_sparse_semi_structured"
    major, minor = torch.cuda.get_device_capability(target)
    if major < 8:
        return f"GPU compute capability {major}.{minor} < 8.0; sparse tensor cores need Ampere or newer"
    return None


def require_semi_structured(device: torch.device | str | None = None) -> None:
    """Raise a clear `SparseLearningError` where 2:4 semi-structured kernels cannot run."""
    reason = semi_structured_unavailable(device)
    if reason is not None:
        raise SparseLearningError(
            f"semi_structured=True is not possible: {reason}; allowed here: semi_structured=False or 'auto' (the "
            "CPU layouts: dense, CSR or condensed, chosen per layer by timing)"
        )


AUTO = "auto"


def use_semi_structured(requested: bool | str, device: torch.device | str | None = None) -> bool:
    """Whether export turns 2:4 layers semi-structured on `device`: `True` where the kernels run (refused in one
    line elsewhere), `False` never, `"auto"` exactly where they run (the CPU layouts elsewhere).

    :param requested: True, False or "auto"
    :param device: where the exported model lives (default: the current CUDA device)
    """
    if requested == AUTO:
        return semi_structured_unavailable(device) is None
    if not isinstance(requested, bool):
        raise SparseLearningError(f"semi_structured must be True, False or 'auto', got {requested!r}")
    if requested:
        require_semi_structured(device)
    return requested


def semi_structured_eligible(layer: nn.Linear) -> bool:
    """Whether a Linear's shape and dtype suit the 2:4 kernels (both sides multiples of 64, fp16 or bf16)."""
    out_features, in_features = layer.weight.shape
    return (
        layer.weight.dtype in SUPPORTED_DTYPES
        and out_features % SHAPE_MULTIPLE == 0
        and in_features % SHAPE_MULTIPLE == 0
    )


def to_semi_structured_(layer: nn.Linear) -> bool:
    """Swap a 2:4-sparse Linear's weight for its semi-structured form in place; False if the kernels refuse it.

    The layer stays an `nn.Linear`: `F.linear` dispatches to the sparse kernel through the tensor subclass.
    """
    if not is_nm_sparse(layer.weight):
        raise SparseLearningError(
            "semi_structured=True needs 2:4 masks (at most 2 nonzeros in every 4 consecutive input weights); "
            "prune with sparselearning.export.semi_structured.nm_mask first"
        )
    if not semi_structured_eligible(layer):
        return False
    try:
        compressed = torch.sparse.to_sparse_semi_structured(layer.weight.detach().contiguous())
    except (RuntimeError, ValueError, NotImplementedError):
        return False
    layer.weight = nn.Parameter(compressed, requires_grad=False)
    return True
