"""Figures of one run: training curves and per-layer densities (a report's are `sparselearning.report.figures`)."""
