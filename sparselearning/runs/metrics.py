"""Reading a run's `metrics.jsonl`: one JSON object per line, as the training loop's `MetricsLog` writes it.

It lives here, beside the other run files, because training writes the file while the plots of a run (and
anything else that reads a finished run) only read it; readers then need nothing from `sparselearning.train`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparselearning.runs import files

#: The largest metrics file read (a long run logs a few MB; this only keeps a corrupt file from exhausting memory).
MAX_METRICS_BYTES = 1 << 31


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a `metrics.jsonl` (skipping a line a crash cut short); a special file (a FIFO) or an
    unreadable one is one `SparseLearningError` line."""
    records = []
    for line in files.read_text(Path(path), limit=MAX_METRICS_BYTES).splitlines():
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            continue
    return records
