"""Sparse neural network training for PyTorch: `Masking`, one-call `methods`, and the seed API's `funcs`."""

from sparselearning import methods
from sparselearning._version import __version__
from sparselearning.core import Masking

__all__ = ["Masking", "__version__", "methods"]
