"""One rank of a two-process Lightning DDP fit with SparseTraining (run under torchrun by test_lightning.py):
each rank sees its own half of the data and saves its final masks and weights to the folder it is given."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sparselearning import methods
from sparselearning.integrations.lightning import SparseTraining
from tests.integrations.lightning_setup import Classifier, batches, lenet, loader, optimizer_for, trainer


def main(out: Path) -> None:
    callback = SparseTraining("RigL", density=0.1, update_frequency=5)
    fit = trainer([callback], str(out), max_epochs=1, devices=2, strategy="ddp")
    fit.fit(Classifier(lenet()), loader(batches(40)))  # 20 batches on each rank
    masking = callback.masking
    reference = lenet()
    initial = methods.rigl(reference, optimizer_for(reference), density=0.1, total_steps=20).mask_dict
    changed = sum(int((mask != initial[name.removeprefix("model.")]).sum()) for name, mask in masking.mask_dict.items())
    weights = {name: record.parameter.detach().clone() for name, record in masking.records.items()}
    torch.save(
        {"mask_step": masking.mask_step, "masks": dict(masking.mask_dict), "weights": weights, "changed": changed},
        out / f"rank{fit.global_rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
