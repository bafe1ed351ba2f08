"""Sparse compute: the same training as masked training (weights, masks, optimizer state, the dense gradient that
growth reads), a dense masked path with a logged reason where it does not apply, and "auto" deciding per layer."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparselearning import methods
from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.masking.records import Holding, MaskedParameter
from sparselearning.masking.sparse_compute import (
    Pattern,
    PlainForward,
    SparseCompute,
    SparseForward,
    check_sparse_compute,
    sparse_linear,
    why_not_sparse,
)

LOGGER = "sparselearning.masking.sparse_compute"


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 40), nn.ReLU(), nn.Linear(40, 5))


def _optimizer(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    if kind == "AdamW":
        return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return torch.randn(16, 24, generator=generator), torch.randint(0, 5, (16,), generator=generator)


def _backward(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    inputs, labels = _batch(step)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(inputs), labels).backward()


def _compute(masking: Masking) -> SparseCompute:
    return next(o for o in masking.observers if isinstance(o, SparseCompute))


def _rigl(kind: str, sparse_compute: bool | str) -> tuple[nn.Module, torch.optim.Optimizer, Masking]:
    model = _mlp()
    optimizer = _optimizer(model, kind)
    masking = methods.rigl(
        model,
        optimizer,
        density=0.2,
        total_steps=100,
        update_frequency=3,
        end_fraction=1.0,
        sparse_compute=sparse_compute,
    )
    return model, optimizer, masking


def test_a_pattern_is_the_csr_of_the_masked_weight_and_of_its_transpose() -> None:
    mask = torch.rand(7, 5) < 0.4
    mask[3] = False  # an empty row
    weight = torch.randn(7, 5) * mask
    pattern = Pattern.from_mask(mask)
    assert pattern.nnz == int(mask.sum())
    assert torch.equal(pattern.csr(weight.reshape(-1)).to_dense(), weight)
    assert torch.equal(pattern.csr_t(weight.reshape(-1)).to_dense(), weight.t())


@pytest.mark.parametrize("dense_weight_grad", [False, True])
@pytest.mark.parametrize("shape", [(6, 9), (2, 3, 9)])
def test_the_sparse_product_and_its_gradients_equal_the_masked_dense_ones(
    dense_weight_grad: bool, shape: tuple[int, ...]
) -> None:
    mask = torch.rand(4, 9) < 0.5
    weight = (torch.randn(4, 9, dtype=torch.float64) * mask).requires_grad_()
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(*shape[:-1], 4, dtype=torch.float64)
    y = sparse_linear(x, weight, bias, Pattern.from_mask(mask), dense_weight_grad)
    got = torch.autograd.grad(y, (x, weight, bias), grad_out)
    reference = F.linear(x, weight, bias)
    expected = torch.autograd.grad(reference, (x, weight, bias), grad_out)
    torch.testing.assert_close(y, reference)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[2], expected[2])
    if dense_weight_grad:
        torch.testing.assert_close(got[1], expected[1])
    else:  # only at active positions, exactly zero elsewhere
        torch.testing.assert_close(got[1], expected[1] * mask)
        assert torch.count_nonzero(got[1][~mask]) == 0


def test_no_input_gradient_is_computed_for_an_input_that_needs_none() -> None:
    mask = torch.rand(4, 6) < 0.5
    weight = (torch.randn(4, 6) * mask).requires_grad_()
    y = sparse_linear(torch.randn(3, 6), weight, None, Pattern.from_mask(mask), False)
    y.sum().backward()
    assert weight.grad is not None and torch.count_nonzero(weight.grad[~mask]) == 0


@pytest.mark.parametrize("kind", ["SGD", "AdamW"])
def test_sparse_compute_trains_like_masked_training_through_mask_updates(kind: str) -> None:
    runs = [_rigl(kind, sparse) for sparse in (False, True)]
    for step in range(10):  # updates at steps 3, 6 and 9
        for model, optimizer, masking in runs:
            _backward(model, optimizer, step)
            masking.step()
    (m0, o0, k0), (m1, o1, k1) = runs
    assert k0.mask_step == k1.mask_step == 10
    for name in k0.masks:
        assert torch.equal(k0.masks[name], k1.masks[name]), name
    for p0, p1 in zip(m0.parameters(), m1.parameters(), strict=True):
        torch.testing.assert_close(p1, p0, atol=1e-6, rtol=0)
        assert o0.state[p0].keys() == o1.state[p1].keys()
        for key, value in o0.state[p0].items():
            torch.testing.assert_close(o1.state[p1][key], value, atol=1e-6, rtol=0)
    assert all(_compute(k1).choices().values())


def test_growth_reads_the_same_dense_gradient_on_an_update_step() -> None:
    runs = [_rigl("SGD", sparse) for sparse in (False, True)]
    for step in range(4):
        for model, optimizer, masking in runs:
            _backward(model, optimizer, step)
            if step < 3:
                masking.step()
    (_, _, k0), (_, _, k1) = runs
    assert k0.is_update_step() and k1.is_update_step()
    for name, p0 in k0.params.items():
        p1 = k1.params[name]
        assert p0.grad is not None and p1.grad is not None
        assert torch.count_nonzero(p1.grad[~k1.masks[name]]) > 0  # dense: growth ranks inactive positions
        torch.testing.assert_close(p1.grad, p0.grad, atol=1e-6, rtol=0)


def test_between_updates_the_gradient_is_zero_at_inactive_positions() -> None:
    model, optimizer, masking = _rigl("SGD", True)
    _backward(model, optimizer, 0)
    assert not masking.is_update_step()
    for name, weight in masking.params.items():
        assert weight.grad is not None and torch.count_nonzero(weight.grad[~masking.masks[name]]) == 0


def test_layers_where_it_does_not_apply_keep_the_dense_path_and_say_why_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    torch.manual_seed(0)
    tied, twin = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
    twin.weight = tied.weight
    model = nn.Sequential(
        nn.Unflatten(1, (1, 6)),
        nn.Conv1d(1, 2, 3),
        nn.Flatten(),
        nn.Linear(8, 6),
        tied,
        nn.ReLU(),
        twin,
        Scaled(6, 6),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        masking = Masking(optimizer, density=0.5, sparse_compute=True)
        masking.add_module(model)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1
    assert "1.weight (not an nn.Linear (Conv1d))" in lines[0]
    assert "4.weight (tied or shared weight)" in lines[0]
    assert "7.weight (not an nn.Linear (Scaled))" in lines[0]
    assert list(_compute(masking).layers) == ["3.weight"]
    assert isinstance(model[3].forward, SparseForward)
    assert not any("forward" in vars(model[index]) for index in (1, 4, 6, 7))
    model(torch.randn(4, 6)).sum().backward()
    masking.step()


def test_a_float16_input_or_autocast_falls_back_to_the_dense_product_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model, _, masking = _rigl("SGD", True)
    with torch.no_grad():
        expected = model(torch.ones(2, 24))
    with caplog.at_level(logging.WARNING, logger=LOGGER), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(2):
            got = model(torch.ones(2, 24))
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines == [f"sparse_compute: {name} computes densely (inside autocast)" for name in masking.masks]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=0.1, rtol=0.05)


def test_auto_decides_per_layer_on_the_first_training_batch_and_keeps_its_choice() -> None:
    model, optimizer, masking = _rigl("SGD", "auto")
    compute = _compute(masking)
    assert set(compute.choices().values()) == {None}
    with torch.no_grad():
        model(torch.randn(2, 24))  # evaluation does not decide
    assert set(compute.choices().values()) == {None}
    _backward(model, optimizer, 0)
    masking.step()
    decided = compute.choices()
    assert all(isinstance(choice, bool) for choice in decided.values())
    for step in range(1, 5):
        _backward(model, optimizer, step)
        masking.step()
    assert compute.choices() == decided


def test_a_copy_or_pickle_of_the_model_computes_with_the_plain_forward() -> None:
    model, _, _ = _rigl("SGD", True)
    x = torch.randn(3, 24)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert isinstance(copied[0].forward, PlainForward)
        assert copied.state_dict().keys() == model.state_dict().keys()
        torch.testing.assert_close(copied(x), model(x))
    assert isinstance(model[0].forward, SparseForward)


def test_a_layer_that_stops_being_masked_gets_its_own_forward_back() -> None:
    model, _, masking = _rigl("SGD", True)
    masking.remove_weight("2.weight")
    assert "forward" not in vars(model[2])
    assert isinstance(model[0].forward, SparseForward)


def test_checkpoints_are_the_same_with_and_without_sparse_compute() -> None:
    (_, _, plain), (_, _, sparse) = _rigl("SGD", False), _rigl("SGD", True)
    assert plain.state_dict().keys() == sparse.state_dict().keys()
    sparse.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("value", ["yes", 1, None, "Auto"])
def test_a_bad_setting_is_refused_in_one_line(value: object) -> None:
    with pytest.raises(SparseLearningError, match=r"^sparse_compute must be true, false or 'auto', got .+$"):
        check_sparse_compute(value)
    with pytest.raises(SparseLearningError, match="^sparse_compute must be"):
        Masking(torch.optim.SGD(_mlp().parameters(), lr=0.1), sparse_compute=value)  # type: ignore[arg-type]


def test_an_update_by_hand_that_reads_gradients_is_refused_after_a_sampled_backward() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = Masking(optimizer, density=0.2, growth_mode="absolute-gradient", sparse_compute=True)
    masking.add_module(model)
    _backward(model, optimizer, 0)
    with pytest.raises(SparseLearningError) as refused:
        masking.update_connections()
    assert str(refused.value) == (
        "sparse_compute computed this step's gradients of 0.weight, 2.weight, 4.weight at active positions only, "
        "but growth_mode='absolute-gradient' reads dense gradients: set update_frequency so that masking.step() "
        "runs the update (it computes them densely then), or use sparse_compute=False"
    )


def test_an_update_by_hand_whose_rules_read_no_gradient_runs() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = Masking(optimizer, density=0.2, growth_mode="random", redistribution_mode="none", sparse_compute=True)
    masking.add_module(model)
    _backward(model, optimizer, 0)
    masking.step()
    _backward(model, optimizer, 1)
    change = masking.update_connections()
    assert change.step == 1


@pytest.mark.parametrize(
    ("device", "dtype", "reason"),
    [
        ("meta", torch.float32, "on meta (CPU only)"),
        ("cpu", torch.float16, "dtype torch.float16 (float32 and float64 only)"),
        ("cpu", torch.float64, None),
    ],
)
def test_weights_off_the_cpu_or_in_half_precision_are_not_computed_sparsely(
    device: str, dtype: torch.dtype, reason: str | None
) -> None:
    layer = nn.Linear(4, 3, device=device, dtype=dtype)
    mask = torch.ones(3, 4, dtype=torch.bool, device=device)
    record = MaskedParameter("weight", layer.weight, (Holding("", layer, "weight"),), 0, mask)
    assert why_not_sparse(record) == reason
