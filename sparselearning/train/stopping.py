"""Stopping a run on request: SIGTERM (a cluster's scheduler, `kill`) or SIGINT (Ctrl-C).

The first signal only sets a flag; the training loop saves a checkpoint at the next safe point (after the
current step) and raises `StopRequested`, which the command turns into one line and exit status 128 + the
signal's number (143 for SIGTERM, 130 for SIGINT), as shells report a process a signal ended. Running the
same command again resumes from that step exactly. A second Ctrl-C while the first is being handled stops
at once (KeyboardInterrupt) for a user who does not want to wait.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):  # noqa: N818 (a request, not an error)
    """The run stopped on a signal after saving its checkpoint."""

    def __init__(self, signum: int, step: int, where: str) -> None:
        self.signum = signum
        self.step = step
        self.where = where
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}; {where}; run the same command again to resume")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class SignalCatcher:
    """While active (a `with` block in the main thread), SIGTERM and SIGINT set `signum` instead of ending
    the process. Outside the main thread (where handlers cannot be installed) it does nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> SignalCatcher:
        if threading.current_thread() is threading.main_thread():
            for kind in HANDLED:
                self._previous[kind] = signal.signal(kind, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for kind, handler in self._previous.items():
            signal.signal(kind, handler)
        self._previous.clear()
