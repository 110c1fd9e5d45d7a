"""The workflow's budget: wall-clock time (and optionally a number of trained runs), spent step by step."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from honed.errors import HonedError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "20m", "1h30m" or "1.5h"."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise HonedError(f"budget {text!r} is not a duration: write it like 90s, 20m, 1h30m or 2h")
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise HonedError(f"budget {text!r} must be more than zero")
    return seconds


@dataclass
class Budget:
    """Time left and runs left. ``spent_before`` carries the time already spent by an interrupted workflow."""

    seconds: float
    max_runs: int = 0  # 0: no limit on the number of trained runs
    spent_before: float = 0.0
    runs_before: int = 0
    started: float = field(default_factory=time.monotonic)

    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    def remaining(self) -> float:
        return max(self.seconds - self.spent(), 0.0)

    def runs_left(self, runs_done: int) -> int:
        return 1 << 30 if not self.max_runs else max(self.max_runs - runs_done, 0)

    def allows(self, estimated_s: float, *, runs_done: int, runs: int = 1) -> bool:
        """Whether a step that trains ``runs`` runs and should take ``estimated_s`` fits in what is left."""
        return estimated_s <= self.remaining() and self.runs_left(runs_done) >= runs
