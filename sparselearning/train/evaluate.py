"""Loss, top-1 and top-5 accuracy of a model over a loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], memory_format=None) -> dict:
    """Mean loss and accuracies over every batch; the model is put back in its previous mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    top1 = top5 = count = 0
    for inputs, labels in batches:
        if memory_format is not None:
            inputs = inputs.contiguous(memory_format=memory_format)
        outputs = model(inputs).float()
        loss_sum += nn.functional.cross_entropy(outputs, labels, reduction="sum").double().cpu()
        best = outputs.topk(min(5, outputs.shape[1]), dim=1).indices
        hits = best == labels.view(-1, 1)
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.any(dim=1).sum())
        count += len(labels)
    model.train(was_training)
    if count == 0:
        return {"loss": float("nan"), "accuracy": 0.0, "top5": 0.0}
    return {"loss": float(loss_sum) / count, "accuracy": top1 / count, "top5": top5 / count}
