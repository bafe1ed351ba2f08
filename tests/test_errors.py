"""The one-line helpers every command ends with: `first_line`, `one_line` and `print_failure`."""

from __future__ import annotations

import pytest

from sparselearning.errors import SparseLearningError, first_line, one_line, print_failure


def test_first_line_is_the_first_non_blank_line_or_the_type_name() -> None:
    assert first_line(RuntimeError("\n  shape mismatch  \nat frame 3\n")) == "shape mismatch"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError(" \n ")) == "ValueError"


def test_first_line_cuts_a_long_line_and_says_so() -> None:
    error = RuntimeError("x" * 400)
    assert first_line(error) == "x" * 297 + "..."
    assert first_line(error, limit=10) == "xxxxxxx..."
    assert first_line(error, limit=None) == "x" * 400
    assert first_line(RuntimeError("y" * 300)) == "y" * 300


def test_first_line_can_quote_another_text_of_the_error() -> None:
    error = OSError(28, "No space left on device")
    assert first_line(error, text=error.strerror) == "No space left on device"
    assert first_line(error, text="") == "OSError"


def test_one_line_folds_all_whitespace() -> None:
    assert one_line("  a\n\tb  c\r\n") == "a b c"


def test_print_failure_prints_one_line_and_returns_the_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_failure(SparseLearningError("bad value\n  allowed: 1, 2")) == 2
    assert print_failure("the run stopped", 143, prefix="stopped") == 143
    assert capsys.readouterr().err == "error: bad value allowed: 1, 2\nstopped: the run stopped\n"


def test_print_failure_raises_again_with_the_traceback_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SPARSELEARNING_TRACEBACK", "1")
    with pytest.raises(SparseLearningError, match="^bad value$"):
        try:
            raise SparseLearningError("bad value")
        except SparseLearningError as error:
            print_failure(error)
    # With nothing being handled there is nothing to raise: the line is printed as usual.
    assert print_failure("no exception here", 3) == 3
    assert capsys.readouterr().err == "error: no exception here\n"
    monkeypatch.setenv("SPARSELEARNING_TRACEBACK", "")
    try:
        raise SparseLearningError("shown as a line")
    except SparseLearningError as error:
        assert print_failure(error) == 2
    assert capsys.readouterr().err == "error: shown as a line\n"
