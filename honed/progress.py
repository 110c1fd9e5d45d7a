"""How training talks to whoever watches it: the CLI draws progress bars; the library only logs."""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger("honed")


class Reporter(Protocol):
    def message(self, text: str) -> None: ...
    def phase_started(self, label: str, total: int) -> None: ...
    def advance(self, steps: int = 1) -> None: ...
    def phase_finished(self) -> None: ...
    def epoch_finished(self, row: dict[str, Any]) -> None: ...


class LogReporter:
    """The default: log lines, no progress bars."""

    def message(self, text: str) -> None:
        log.info(text)

    def phase_started(self, label: str, total: int) -> None:
        log.debug("%s (%d steps)", label, total)

    def advance(self, steps: int = 1) -> None:
        pass

    def phase_finished(self) -> None:
        pass

    def epoch_finished(self, row: dict[str, Any]) -> None:
        log.info("epoch %s: %s", row.get("epoch"), {k: v for k, v in row.items() if k != "epoch"})


class Phase:
    """A progress callback (``phase(n)``: n more items done) that opens its phase on the reporter at the first
    item, so work that turns out to be cached (a decoded-image cache found on disk) draws nothing.

    Use as a context manager: the phase is closed on leaving, whether or not it was opened."""

    def __init__(self, reporter: Reporter | None, label: str, total: int):
        self.reporter, self.label, self.total = reporter, label, total
        self.started = False

    def __call__(self, steps: int = 1) -> None:
        if self.reporter is None:
            return
        if not self.started:
            self.started = True
            self.reporter.phase_started(self.label, self.total)
        self.reporter.advance(steps)

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started and self.reporter is not None:
            self.reporter.phase_finished()
            self.started = False
