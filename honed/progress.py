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
