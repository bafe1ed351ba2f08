"""`python -m sparselearning train ...` (what torchrun runs)."""

from sparselearning.cli import main

main()
