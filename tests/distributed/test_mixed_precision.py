"""Autocast with masking: bfloat16 on CPU keeps masks exact; a scaler's skipped step changes no mask."""

from __future__ import annotations

import torch
from torch import nn

from sparselearning import methods
from tests.helpers import SmallConvNet, batch, inactive_values_are_zero


def test_bfloat16_autocast_with_rigl_keeps_counts_and_zeros() -> None:
    model = SmallConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.2, total_steps=40, update_frequency=3)
    counts = {n: int(m.sum()) for n, m in masking.mask_dict.items()}
    for step in range(15):
        inputs, labels = batch(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        masking.step()
    assert {n: int(m.sum()) for n, m in masking.mask_dict.items()} == counts
    assert inactive_values_are_zero(masking)
    assert all(p.dtype == torch.float32 for p in model.parameters())


class _Scaler:
    """A stand-in GradScaler for CPU: unscales by a factor and records update() calls."""

    def __init__(self, factor: float) -> None:
        self.factor, self.updates, self.steps = factor, 0, 0

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.grad.div_(self.factor)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.steps += 1
        optimizer.step()

    def update(self) -> None:
        self.updates += 1


def test_non_finite_gradients_skip_the_update_and_growth_sees_unscaled_gradients() -> None:
    model = SmallConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.rigl(model, optimizer, density=0.2, total_steps=40, update_frequency=2)
    scaler = _Scaler(1024.0)
    inputs, labels = batch(0)
    optimizer.zero_grad()
    (nn.functional.cross_entropy(model(inputs), labels) * 1024.0).backward()
    masking.step(scaler=scaler)  # step 0: a normal step
    assert scaler.steps == 1 and scaler.updates == 1
    masking.mask_step = 2  # an update iteration
    before = {n: m.clone() for n, m in masking.mask_dict.items()}
    optimizer.zero_grad()
    (nn.functional.cross_entropy(model(inputs), labels) * 1024.0).backward()
    model.fc.weight.grad[0, 0] = float("inf")
    masking.step(scaler=scaler)
    assert all(torch.equal(before[n], masking.mask_dict[n]) for n in before), "skipped: no mask change"
    assert masking.mask_step == 3 and scaler.updates == 2
    masking.mask_step = 4
    optimizer.zero_grad()
    (nn.functional.cross_entropy(model(inputs), labels) * 1024.0).backward()
    expected = model.conv2.weight.grad / 1024.0
    masking.step(scaler=scaler)
    assert torch.allclose(model.conv2.weight.grad, expected)
    assert any(not torch.equal(before[n], masking.mask_dict[n]) for n in before), "the update ran"
