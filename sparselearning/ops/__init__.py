"""Tensor building blocks shared by the mask functions: exact selection, sampling, apportioning."""
