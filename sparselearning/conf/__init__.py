"""Hydra configuration shipped with the package (groups: dataset, model, optimizer, masking, specific)."""
