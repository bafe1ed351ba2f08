"""Without a GPU that has 2:4 kernels, the semi-structured benchmark says why and exits with status 1."""

from __future__ import annotations

import pytest

from benchmarks import semi_structured_gpu
from sparselearning.export.semi_structured import semi_structured_unavailable


@pytest.mark.skipif(semi_structured_unavailable() is None, reason="a GPU with 2:4 kernels is present")
def test_semi_structured_gpu_exits_clearly_without_a_gpu(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        semi_structured_gpu.main(["--smoke"])
    assert done.value.code == 1
    assert "cannot run here" in capsys.readouterr().out
