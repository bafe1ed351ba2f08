"""Sparse neural network training for PyTorch: `Masking`, one-call `methods`, and the seed API's `funcs`."""

from sparselearning import methods
from sparselearning.core import Masking

__version__ = "0.1.0"
__all__ = ["Masking", "__version__", "methods"]
