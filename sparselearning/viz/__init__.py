"""Figures: training curves and per-layer densities of a run, and the comparison plots of reports."""
