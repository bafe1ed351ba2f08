"""Exporting an N:M-trained model: on the CPU its layers race dense, CSR and condensed (N:M is a constant fan-in)
and outputs match; the 2:4 semi-structured layout is refused in one line where the hardware cannot run it, and
its decision logic (refuse, auto) is tested without a GPU by faking what torch.cuda reports."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.export import semi_structured as semi
from sparselearning.export import to_sparse, to_sparse_with_report
from sparselearning.funcs.n_m import is_exactly_n_m


def _trained_nm(n: int = 2) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    masking = methods.nm(model, optimizer, n=n, m=4, total_steps=5)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        inputs, labels = torch.randn(16, 64, generator=generator), torch.randint(0, 8, (16,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        masking.step()
    return model, masking


@pytest.mark.parametrize("n", [2, 1])
def test_an_nm_model_exports_to_the_fastest_measured_cpu_layout_and_matches(n: int) -> None:
    model, masking = _trained_nm(n)
    batch = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    exported, decisions = to_sparse_with_report(model, masking, example_input=batch, semi_structured="auto")
    assert [d.name for d in decisions] == ["0", "2"]
    for decision in decisions:
        assert decision.density == n / 4
        assert {name for name, _ in decision.timings} == {"dense", "csr", "condensed"}  # raced as constant fan-in
        winner = min(decision.timings, key=lambda item: item[1])[0]
        assert decision.kind == {"dense": "dense", "csr": "csr_linear", "condensed": "condensed_linear"}[winner]
    with torch.no_grad():
        torch.testing.assert_close(exported(batch), model(batch), rtol=0, atol=1e-5)
    assert all(is_exactly_n_m(model[i].weight, n, 4) for i in (0, 2))  # the input model is left as it was


@pytest.mark.skipif(semi.semi_structured_unavailable() is None, reason="a GPU with 2:4 kernels is present")
def test_asking_for_2_4_where_it_cannot_run_is_refused_in_one_line() -> None:
    model, masking = _trained_nm()
    with pytest.raises(SparseLearningError) as refusal:
        to_sparse(model, masking, semi_structured=True)
    message = str(refusal.value)
    assert "\n" not in message
    assert message.startswith("semi_structured=True is not possible: ")
    assert "allowed here: semi_structured=False or 'auto'" in message


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def test_a_gpu_below_compute_capability_8_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, (7, 5))
    assert semi.semi_structured_unavailable("cuda") == (
        "GPU compute capability 7.5 < 8.0; sparse tensor cores need Ampere or newer"
    )
    with pytest.raises(SparseLearningError, match=r"compute capability 7.5 < 8.0.*allowed here: semi_structured=False"):
        semi.use_semi_structured(True, "cuda")
    assert semi.use_semi_structured("auto", "cuda") is False


def test_an_ampere_gpu_takes_2_4_when_asked_or_on_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, (8, 0))
    assert semi.semi_structured_unavailable("cuda") is None
    assert semi.use_semi_structured(True, "cuda") is True
    assert semi.use_semi_structured("auto", "cuda") is True
    assert semi.use_semi_structured(False, "cuda") is False
    # A model on the CPU cannot use them even with such a GPU in the machine.
    assert semi.use_semi_structured("auto", "cpu") is False
    with pytest.raises(SparseLearningError, match=r"the model is on cpu"):
        semi.use_semi_structured(True, "cpu")


def test_without_cuda_auto_keeps_the_cpu_layouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert semi.use_semi_structured("auto") is False
    with pytest.raises(SparseLearningError, match=r"no CUDA GPU is available"):
        semi.use_semi_structured(True)
    with pytest.raises(SparseLearningError, match=r"semi_structured must be True, False or 'auto', got 'yes'"):
        semi.use_semi_structured("yes")
