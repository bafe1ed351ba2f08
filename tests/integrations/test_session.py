"""The framework-neutral part of the trainer integrations: routing optimizer.step through the masking, restoring
saved masks without losing restored weights, and importing sparselearning without the optional frameworks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.integrations.session import RoutedStep, SparseSession, first_tensor, unchanged_by


def model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def loss(model: nn.Module, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = torch.randn(8, 12, generator=generator), torch.randint(0, 3, (8,), generator=generator)
    return nn.functional.cross_entropy(model(inputs), labels)


def test_a_routed_optimizer_step_is_a_masking_step_and_the_closure_runs_first() -> None:
    model, optimizer = model_and_optimizer()
    reference_model, reference_optimizer = model_and_optimizer()
    session = SparseSession("RigL", density=0.3, update_frequency=3)
    session.start(model, optimizer, total_steps=12)
    reference = methods.rigl(reference_model, reference_optimizer, density=0.3, update_frequency=3, total_steps=12)
    for step in range(12):

        def closure(step: int = step) -> torch.Tensor:
            optimizer.zero_grad()
            value = loss(model, step)
            value.backward()
            return value

        returned = optimizer.step(closure)  # what a trainer calls
        assert torch.is_tensor(returned)
        reference_optimizer.zero_grad()
        loss(reference_model, step).backward()
        reference.step()
    assert session.routing is not None and session.routing.optimizer_steps == 12
    assert session.started().mask_step == reference.mask_step == 12
    for name, mask in reference.mask_dict.items():
        assert torch.equal(session.started().mask_dict[name], mask)
    for ours, theirs in zip(model.parameters(), reference_model.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    session.stop()
    assert "step" not in optimizer.__dict__


def test_routing_is_put_back_when_something_replaced_it() -> None:
    model, optimizer = model_and_optimizer()
    session = SparseSession("Static", density=0.5)
    masking = session.start(model, optimizer, total_steps=4)
    routing = session.routing
    assert isinstance(routing, RoutedStep)
    optimizer.step = routing.original  # type: ignore[method-assign]  # what Accelerate does under float16
    routing.ensure()
    loss(model, 0).backward()
    optimizer.step()
    assert masking.mask_step == 1


def test_unchanged_by_restores_weights_and_optimizer_state() -> None:
    model, optimizer = model_and_optimizer()
    loss(model, 0).backward()
    optimizer.step()
    before = [p.detach().clone() for p in model.parameters()]
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    with unchanged_by(model, optimizer):
        methods.static(model, optimizer, density=0.1)  # zeroes 90% of the weights and their momentum
    for parameter, saved in zip(model.parameters(), before, strict=True):
        assert torch.equal(parameter, saved)
    for parameter, saved in zip(model.parameters(), momentum, strict=True):
        assert torch.equal(optimizer.state[parameter]["momentum_buffer"], saved)


def test_a_saved_state_restores_masks_and_keeps_the_restored_weights() -> None:
    model, optimizer = model_and_optimizer()
    first = SparseSession("SET", density=0.3, update_frequency=2)
    first.start(model, optimizer, total_steps=10)
    for step in range(5):
        optimizer.zero_grad()
        loss(model, step).backward()
        optimizer.step()
    saved = first.state_dict()
    weights = [p.detach().clone() for p in model.parameters()]
    first.stop()

    second = SparseSession("SET", density=0.3, update_frequency=2)
    restored = second.start(model, optimizer, total_steps=10, saved=saved)
    assert restored.mask_step == 5
    for name, mask in first.started().mask_dict.items():
        assert torch.equal(restored.mask_dict[name], mask)
    for parameter, weight in zip(model.parameters(), weights, strict=True):
        assert torch.equal(parameter, weight)


def test_refusals_are_one_line() -> None:
    with pytest.raises(SparseLearningError, match="unknown method"):
        SparseSession("Magic", density=0.1)
    model, optimizer = model_and_optimizer()
    session = SparseSession("Static", density=0.5)
    with pytest.raises(SparseLearningError, match="has not started"):
        session.metrics()
    with pytest.raises(SparseLearningError, match="not a sparse-training state"):
        session.start(model, optimizer, total_steps=4, saved={"masks": {}})
    with pytest.raises(SparseLearningError, match="version 7 is not supported"):
        SparseSession("Static", density=0.5).start(model, optimizer, 4, saved={"version": 7, "masking": {}})
    session.start(model, optimizer, total_steps=4)
    with pytest.raises(SparseLearningError, match="already attached"):
        session.start(model, optimizer, total_steps=4)


def test_first_tensor_of_a_batch() -> None:
    x = torch.ones(2, 3)
    assert first_tensor(x) is x
    assert first_tensor((x, torch.zeros(2))) is x
    assert first_tensor([[x]]) is x
    assert first_tensor({"input_ids": x, "labels": torch.zeros(2)}) is x
    assert first_tensor(("text", 3)) is None


def test_import_sparselearning_needs_neither_lightning_nor_transformers() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('lightning', 'pytorch_lightning', 'transformers', 'accelerate'):\n"
        "            raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import sparselearning, sparselearning.methods, sparselearning.integrations.session\n"
        "try:\n"
        "    import sparselearning.integrations.lightning\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'sparselearning[lightning]'" in result.stdout


def test_metrics_between_mask_updates_do_not_recheck_every_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer = model_and_optimizer()
    session = SparseSession("SET", density=0.3, update_frequency=3)
    masking = session.start(model, optimizer, total_steps=12)
    checks: list[int] = []
    original = Masking._count_weights
    monkeypatch.setattr(
        Masking, "_count_weights", lambda self, *args: checks.append(self.mask_step) or original(self, *args)
    )
    logged = []
    for step in range(7):
        optimizer.zero_grad()
        loss(model, step).backward()
        optimizer.step()
        logged.append(session.metrics()["sparsity/density"])
    # First read, then after the updates at steps 3 and 6 (whose own check runs too); never in between.
    assert checks == [1, 3, 4, 6, 7]
    assert logged == [masking.stats.total_density] * 7
