"""torch.compile and Masking: either order works, names never carry `_orig_mod.`, a compiled RigL run matches the
eager one, and mask updates never make the compiled model recompile (masks change tensors in place)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparselearning import methods


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


def _train(model: nn.Module, steps: int, compile_before=None, compile_after=None):
    """RigL for `steps` steps; the forward runs through `compile_before(model)` (handed to Masking) or
    `compile_after(model)` (made once the masks exist), else through the model itself."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    network = compile_before(model) if compile_before else model
    masking = methods.rigl(network, optimizer, density=0.3, total_steps=40, update_frequency=4)
    network = compile_after(model) if compile_after else network
    generator = torch.Generator().manual_seed(3)
    for _ in range(steps):
        inputs, labels = torch.randn(16, 12, generator=generator), torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(network(inputs), labels).backward()
        masking.step()
    return masking


class _CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and counts how often it was called to
    compile one (a recompilation calls it again)."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        self.compilations += 1
        return graph.forward


def test_masking_a_compiled_model_uses_the_plain_names_and_updates_never_recompile() -> None:
    torch._dynamo.reset()
    model = _model()
    backend = _CountingBackend()
    masking = _train(model, 13, compile_before=lambda m: torch.compile(m, backend=backend))
    assert list(masking.mask_dict) == ["0.weight", "2.weight", "4.weight"]
    assert masking.mask_step == 13 and masking.stats.total_nonzero == round(0.3 * masking.total_params)
    assert backend.compilations == 1, "three mask updates, one compilation"


def test_a_compiled_rigl_run_matches_the_eager_run() -> None:
    torch._dynamo.reset()
    eager_model = _model()
    compiled_model = copy.deepcopy(eager_model)
    eager = _train(eager_model, 13)
    compiled = _train(compiled_model, 13, compile_after=torch.compile)  # inductor, compiled once masked
    assert all(torch.equal(eager.mask_dict[name], compiled.mask_dict[name]) for name in eager.mask_dict)
    for (name, a), (_, b) in zip(eager_model.named_parameters(), compiled_model.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=0), name
    for name, mask in compiled.mask_dict.items():
        assert int(torch.count_nonzero(compiled.params[name].detach()[~mask])) == 0
