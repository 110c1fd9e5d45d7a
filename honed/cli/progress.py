"""Rich progress bars and tables for the CLI: the one place that draws on the terminal.

On a terminal: live bars (count, rate, time left) and tables fitted to the window. In a pipe or a log file
(stdout not a terminal): no width limit, so a table never cuts a path or a name and a line is never folded;
bars become one line per stage (with a line every ``HEARTBEAT_S`` on long ones) drawn on stderr when that is
still a terminal, else in the log; an epoch is its one epoch line."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

LOG_WIDTH = 10_000  # columns of a console that is not a terminal: wide enough that nothing is cut or folded
HEARTBEAT_S = 30.0  # in a log, a long stage says how far it is this often


def out_console(*, stderr: bool = False) -> Console:
    """A console for a command's output: rich on a terminal; in a pipe or a file, nothing cut or folded."""
    stream = sys.stderr if stderr else sys.stdout
    if _is_terminal(stream):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class RateColumn(ProgressColumn):
    """Items per second (or seconds per item when slower than one a second)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if not speed else f"{speed:.1f}/s" if speed >= 1 else f"{1 / speed:.1f}s/it",
                    style="progress.data.speed")


class RichReporter:
    """Implements honed.progress.Reporter: a bar per phase and a line per epoch on a terminal; plain lines in
    a log. ``console`` takes the messages and epoch lines (the command's stdout)."""

    def __init__(self, console: Console, *, quiet: bool = False, metric: str = ""):
        self.console = console
        self.quiet = quiet
        self.metric = metric
        self.bars = console if console.is_terminal else _terminal_stderr()  # None: lines in the log
        self._progress: Progress | None = None
        self._task = None
        self._phase: _LinePhase | None = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, soft_wrap=not self.console.is_terminal)

    def phase_started(self, label: str, total: int) -> None:
        if self.quiet:
            return
        if self.bars is None:
            self._phase = _LinePhase(label, total)
            return
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=self.bars,
                                  transient=True, redirect_stdout=self.bars is self.console,
                                  redirect_stderr=self.bars is self.console)  # stdout to a file stays there
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)
        elif self._phase is not None:
            line = self._phase.advance(steps)
            if line:
                self.console.print(line, soft_wrap=True, highlight=False, markup=False)

    def phase_finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        elif self._phase is not None:
            phase, self._phase = self._phase, None
            if not phase.label.startswith("epoch "):  # an epoch's line is its epoch_finished line
                self.console.print(phase.finished(), soft_wrap=True, highlight=False, markup=False)

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        shown = [f"{k} {_fmt(v)}" for k, v in row.items() if k not in ("epoch", "lr", "seconds")]
        self.console.print(f"epoch {row['epoch']:>3}  " + "  ".join(shown) + f"  ({row['seconds']:.1f}s)",
                           soft_wrap=not self.console.is_terminal, highlight=False)


def _terminal_stderr() -> Console | None:
    """stderr as a console for live bars when it is a terminal although stdout is not (``cmd > file``)."""
    return Console(stderr=True) if _is_terminal(sys.stderr) else None


class _LinePhase:
    """A phase drawn as lines: a heartbeat every HEARTBEAT_S with count, rate and time left, and a last line."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.started = self.said = time.perf_counter()

    def advance(self, steps: int) -> str:
        self.done += steps
        now = time.perf_counter()
        if now - self.said < HEARTBEAT_S or self.done >= self.total:
            return ""
        self.said = now
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        return f"{self.label}: {self.done}/{self.total} ({_rate(rate)}, about {_duration(left)} left)"

    def finished(self) -> str:
        seconds = time.perf_counter() - self.started
        rate = _rate(self.done / max(seconds, 1e-9))
        return f"{self.label}: {self.done}/{self.total} in {_duration(seconds)} ({rate})"


def _rate(per_second: float) -> str:
    return f"{per_second:.1f}/s" if per_second >= 1 or per_second == 0 else f"{1 / per_second:.1f}s each"


def _duration(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(metrics: dict[str, float], title: str = "") -> Table:
    table = Table(title=title or None, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key not in ("epoch", "lr", "seconds"):
            table.add_row(key, _fmt(value))
    return table
