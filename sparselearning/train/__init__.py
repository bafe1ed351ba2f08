"""The `sparselearning train` command: configuration, building the pieces, the loop, checkpoints and logs."""
