"""Sparse neural network training for PyTorch: `Masking`, one-call `methods`, and the seed API's `funcs`."""

import torch

from sparselearning._version import __version__
from sparselearning.errors import SparseLearningError

#: The oldest torch the package supports: pyproject.toml asks for `torch>=2.4` (docs/installing.md says why).
_MINIMUM_TORCH = (2, 4)


def _check_torch_version(version: str) -> None:
    """Refuse a torch older than `_MINIMUM_TORCH` in one line, before anything fails deep inside a run.

    pip enforces the range, but an install with `--no-deps` or a torch changed afterwards can bypass it.
    """
    numbers = version.split("+")[0].split(".")[:2]
    try:
        found = tuple(int(number) for number in numbers)
    except ValueError:
        return  # a development build with an unusual version string: let it run
    if found < _MINIMUM_TORCH:
        needed = ".".join(map(str, _MINIMUM_TORCH))
        raise SparseLearningError(
            f"sparselearning needs torch >= {needed} (torch.amp.GradScaler for mixed precision, FlopCounterMode's "
            f"per-module counts for FLOPs); this environment has torch {version}: upgrade it"
        )


_check_torch_version(torch.__version__)

from sparselearning import methods  # noqa: E402  (after the check, so an old torch fails with its message)
from sparselearning.core import Masking  # noqa: E402

__all__ = ["Masking", "__version__", "methods"]
