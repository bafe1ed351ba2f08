"""Metrics of a run: one JSON object per line in `metrics.jsonl`, the same points as TensorBoard events.

On resume, lines past the checkpoint's step are dropped (and TensorBoard purges its own), so the logs of a
run that was killed and resumed read exactly like those of a run that never stopped. Readers of the file use
`sparselearning.runs.metrics.read_metrics`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sparselearning.runs import files
from sparselearning.runs.metrics import MAX_METRICS_BYTES


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends records to `metrics.jsonl` and TensorBoard; `enabled=False` (other ranks) writes nothing."""

    def __init__(self, run_dir: Path, resume_step: int | None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        self.run_dir = run_dir
        self._truncate_after(resume_step)
        from torch.utils.tensorboard import SummaryWriter

        events = files.prepare(run_dir / "tensorboard" / "events", run_dir).parent
        self._writer = SummaryWriter(log_dir=str(events), purge_step=resume_step)

    def _truncate_after(self, step: int | None) -> None:
        if not (self.path.exists() or self.path.is_symlink()):
            return
        files.check_no_links(self.path, self.run_dir)
        if step is None:
            self.path.unlink()
            return
        kept = []
        for line in files.read_text(self.path, limit=MAX_METRICS_BYTES).splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a line cut short by a crash
            if record.get("step", 0) <= step and not (record.get("step") == step and record.get("split") == "test"):
                kept.append(line)
        # Atomic: a crash mid-rewrite keeps the old lines.
        files.write_text(self.path, "".join(f"{line}\n" for line in kept), self.run_dir)

    def write(self, record: dict[str, Any]) -> None:
        """One record: `split` and `step` plus numbers; numbers also go to TensorBoard as split/name."""
        if not self.enabled:
            return
        with files.open_append(self.path, self.run_dir) as stream:
            stream.write(json.dumps({key: _finite(value) for key, value in record.items()}) + "\n")
        assert self._writer is not None
        for key, value in record.items():
            if key not in ("split", "step", "epoch") and isinstance(value, (int, float)):
                self._writer.add_scalar(f"{record['split']}/{key}", value, record["step"])
            elif isinstance(value, dict):
                for name, number in value.items():
                    if isinstance(number, (int, float)):
                        self._writer.add_scalar(f"{record['split']}/{key}/{name}", number, record["step"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
