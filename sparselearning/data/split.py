"""Re-split a dataset's training and validation images to a recipe's validation fraction."""

from __future__ import annotations

import torch

from sparselearning.errors import SparseLearningError


def resplit(tensors: dict[str, torch.Tensor], val_fraction: float) -> dict[str, torch.Tensor]:
    """Pool train and validation, then hold out the last `val_fraction` of the pool (file order) for validation.

    MNIST ships 50k/10k; a recipe with "10% validation" of the 60k training images wants 54k/6k.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise SparseLearningError(f"dataset.val_fraction must be in (0, 1), got {val_fraction!r}")
    images = torch.cat([tensors["train_images"], tensors["val_images"]])
    labels = torch.cat([tensors["train_labels"], tensors["val_labels"]])
    held_out = round(len(labels) * float(val_fraction))
    if not 0 < held_out < len(labels):
        raise SparseLearningError(
            f"dataset.val_fraction={val_fraction} of {len(labels)} examples holds out {held_out}; it must leave at "
            "least one for validation and one for training"
        )
    result = dict(tensors)
    result["train_images"], result["val_images"] = images[:-held_out], images[-held_out:]
    result["train_labels"], result["val_labels"] = labels[:-held_out], labels[-held_out:]
    return result
