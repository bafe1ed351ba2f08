"""Sparse neural network training for PyTorch."""
