"""`sparselearning report`: tables and comparison figures of finished runs and Hydra sweeps.

`collect` finds and loads the runs, `tables` aggregates them over seeds, `render` writes `report.md`,
`report.html` and `runs.csv` (with the figures of `figures`), and `command` is the
command-line entry point.
"""
