"""`sparselearning report` on hostile run directories: one bad run is skipped with one line, never a crash, a
hang, a formula, raw HTML or a write outside the output folder."""

from __future__ import annotations

import contextlib
import html
import json
import os
import threading
from pathlib import Path

import pytest

from sparselearning.report.escape import markdown_text
from tests.report.runs_on_disk import CONFIG, Outcome, metric_lines, report, summary, write_run

OUTPUTS = ("report.md", "report.html", "runs.csv")


def _sweep_with(tmp_path: Path, bad: dict | str | None, **files: str | None) -> tuple[Path, Path]:
    """A sweep of one good run and one bad one (its summary `bad`, other files as given)."""
    root = tmp_path / "sweep"
    write_run(root / "good", summary(accuracy=0.9), metrics=metric_lines())
    bad_dir = write_run(root / "bad", bad, **files)
    return root, bad_dir


def _skipped_once(outcome: Outcome, run_dir: Path) -> str:
    """The report succeeded with the good run, and the bad one got exactly one stderr line: its reason."""
    assert outcome.status == 0, outcome.err
    assert outcome.out[0].startswith("report of 1 run(s), 1 skipped written to ")
    assert len(outcome.err) == 1, outcome.err
    prefix = f"skipped {run_dir.resolve()}: "
    assert outcome.err[0].startswith(prefix)
    assert len(outcome.csv_rows()) == 1
    return outcome.err[0].removeprefix(prefix)


def test_json_nested_100k_deep_is_skipped(tmp_path: Path) -> None:
    root, bad = _sweep_with(tmp_path, "[" * 100_000 + "]" * 100_000)
    reason = _skipped_once(report(root, out=tmp_path / "out"), bad)
    assert reason.startswith(f"cannot read {bad.resolve() / 'summary.json'}: ")


def test_a_metrics_line_nested_deep_is_passed_over(tmp_path: Path) -> None:
    deep = '{"split": "val", "epoch": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    run = write_run(tmp_path / "run", summary(), metrics=deep + metric_lines(1))
    outcome = report(run, out=tmp_path / "out")
    assert outcome.status == 0 and outcome.err == []


def test_mathtext_in_a_name_is_drawn_as_typed(tmp_path: Path) -> None:
    name = r"$\frac{a$"
    run = write_run(tmp_path / "run", summary(method=name, dataset="$x^$", model="m$"), metrics=metric_lines())
    outcome = report(run, out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    assert outcome.csv_rows()[0]["method"] == name
    assert f"<td>{name}" in outcome.text("report.html").replace('"></span>', "<td>")
    assert len(list(outcome.folder.glob("*.png"))) == 5


def _unblock(fifo: Path) -> None:
    """Let a reader blocked on `fifo` go (open it for writing, then close): a test that failed must not hang."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("name", ["summary.json", "metrics.jsonl", "config.yaml"])
def test_a_fifo_in_a_run_is_refused_unopened(tmp_path: Path, name: str) -> None:
    root = tmp_path / "sweep"
    write_run(root / "good", summary(accuracy=0.9))
    bad = write_run(root / "bad", None if name == "summary.json" else summary(), config=None)
    if name != "config.yaml":
        (bad / "config.yaml").write_text(CONFIG)
    os.mkfifo(bad / name)
    result: list[Outcome] = []
    worker = threading.Thread(target=lambda: result.append(report(root, out=tmp_path / "out")), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        _unblock(bad / name)
        worker.join(5)
        pytest.fail(f"the report blocked on a FIFO named {name}")
    reason = _skipped_once(result[0], bad)
    assert reason == f"cannot read {bad.resolve() / name}: it is not a regular file"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("test_accuracy", 1e308, "test_accuracy must be a finite number in [0, 1], got 1e+308"),
        ("test_accuracy", -5, "test_accuracy must be a finite number in [0, 1], got -5"),
        ("test_accuracy", float("nan"), "test_accuracy must be a finite number in [0, 1], got nan"),
        ("test_accuracy", "0.9", "test_accuracy must be a finite number in [0, 1], got '0.9'"),
        ("test_accuracy", True, "test_accuracy must be a finite number in [0, 1], got True"),
        ("test_accuracy", None, "test_accuracy must be a finite number in [0, 1], got None"),
        ("val_accuracy", 1.5, "val_accuracy must be a finite number in [0, 1], got 1.5"),
        ("target_density", 0, "target_density must be a finite number in (0, 1], got 0"),
        ("density", 1.5, "density must be a finite number in (0, 1], got 1.5"),
        ("train_flops", float("inf"), "train_flops must be a finite number >= 0, got inf"),
        ("inference_flops", -0.1, "inference_flops must be a finite number >= 0, got -0.1"),
        ("layer_density", {"fc.weight": 2}, "layer_density['fc.weight'] must be a finite number in [0, 1], got 2"),
        ("seed", -1, "seed must be a whole number >= 0, got -1"),
        ("method", "", "method must be a non-empty text of at most 200 characters, got ''"),
        ("extra_score", float("-inf"), "extra_score must be a finite number, got -inf"),
    ],
)
def test_a_value_out_of_range_skips_the_run_naming_the_field(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    content = summary()
    content[field] = value
    root, bad = _sweep_with(tmp_path, json.dumps(content))
    outcome = report(root, out=tmp_path / "out")
    assert _skipped_once(outcome, bad) == f"summary.json: {message}"
    assert "inf" not in outcome.table_rows()["SET"][0]
    assert markdown_text(f"summary.json: {message}") in outcome.text("report.md")
    assert html.escape(f"summary.json: {message}") in outcome.text("report.html")


def test_names_are_escaped_in_markdown_html_and_csv(tmp_path: Path) -> None:
    method = "<script>alert(1)</script>|`x`[a](javascript:b)"
    dataset = '=HYPERLINK("http://evil","x")\x00\u202etxt.exe'
    run = write_run(
        tmp_path / "run",
        summary(method=method, dataset=dataset, model="@SUM(1)", note="+1\u2066", offset=-3),
        metrics=metric_lines(),
    )
    outcome = report(run, out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    for name in OUTPUTS:
        text = outcome.text(name)
        assert "\x00" not in text and "\u202e" not in text and "\u2066" not in text
        assert "<script" not in text or name == "runs.csv"  # CSV cells are data, kept as they are
    markdown = outcome.text("report.md")
    assert r"&lt;script&gt;alert(1)&lt;/script&gt;\|\`x\`\[a\](javascript:b)" in markdown
    assert "## \\=HYPERLINK" not in markdown and '## =HYPERLINK("http://evil","x")txt.exe / @SUM(1)' in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|`x`[a](javascript:b)" in outcome.text("report.html")
    (row,) = outcome.csv_rows()
    assert row["method"] == method
    assert row["dataset"] == '\'=HYPERLINK("http://evil","x")txt.exe'
    assert row["model"] == "'@SUM(1)"
    assert row["note"] == "'+1"
    assert row["offset"] == "-3"


def test_a_backtick_in_a_path_cannot_close_its_code_span(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root / "good", summary())
    write_run(root / "a`b<i>", None, metrics="")
    outcome = report(root, out=tmp_path / "out")
    skipped = next(line for line in outcome.text("report.md").splitlines() if line.startswith("Skipped runs"))
    assert f"``{(root / 'a`b<i>').resolve()}``" in skipped


def test_config_interpolation_is_never_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPORT_TEST_SECRET", "s3cr3t-value")
    config = CONFIG.replace("sparse_init: random", "sparse_init: ${oc.env:REPORT_TEST_SECRET}")
    config += "exp_name: ${oc.env:REPORT_TEST_SECRET}\n"
    run = write_run(tmp_path / "run", summary(), config=config)
    outcome = report(run, out=tmp_path / "out")
    assert outcome.status == 0, outcome.err
    assert outcome.csv_rows()[0]["sparse_init"] == "${oc.env:REPORT_TEST_SECRET}"
    for name in OUTPUTS:
        assert "s3cr3t" not in outcome.text(name)


def test_a_yaml_alias_bomb_in_a_config_is_refused(tmp_path: Path) -> None:
    bomb = "a: &a [" + ",".join(["x"] * 10) + "]\n"
    for level in range(1, 9):
        previous = "a" if level == 1 else f"l{level - 1}"
        bomb += f"l{level}: &l{level} [" + ",".join([f"*{previous}"] * 10) + "]\n"
    root, bad = _sweep_with(tmp_path, summary(), config=bomb)
    reason = _skipped_once(report(root, out=tmp_path / "out"), bad)
    # Refused by the YAML reader (no aliases) or, failing that, by the report's own bound on its size.
    assert reason.startswith(f"cannot read {bad.resolve() / 'config.yaml'}: ")
    assert reason.endswith(("YAML aliases (*name) are not allowed in a run's files", "holds more than 100000 values"))


@pytest.mark.parametrize("name", [*OUTPUTS, "MNIST-lenet300-100_layer_density.png"])
def test_a_link_in_the_output_folder_is_refused_and_its_target_kept(tmp_path: Path, name: str) -> None:
    run = write_run(tmp_path / "run", summary())
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(outside)
    outcome = report(run, out=out)
    assert outcome.status == 2
    assert outcome.err == [
        f"error: refusing to write {out / name}: {out / name} is a symbolic link (a run never writes through links)"
    ]
    assert outside.read_text() == "keep me"


def test_an_output_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", summary())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    outcome = report(run, out=tmp_path / "out")
    assert outcome.status == 2
    assert outcome.err[0].startswith(f"error: --out {tmp_path / 'out'} is a symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_outputs_are_written_without_temporary_files_left(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", summary(), metrics=metric_lines())
    outcome = report(run, out=tmp_path / "out")
    assert outcome.status == 0
    names = sorted(path.name for path in outcome.folder.iterdir())
    assert [name for name in names if name.startswith(".")] == []
    assert len(names) == 3 + 5
