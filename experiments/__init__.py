"""Experiment grids and the resumable runner that executes them."""
