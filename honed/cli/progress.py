"""Rich progress bars and tables for the CLI: the one place that draws on the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class RichReporter:
    """Implements honed.progress.Reporter with a progress bar per epoch and a line per epoch."""

    def __init__(self, console: Console, *, quiet: bool = False, metric: str = ""):
        self.console = console
        self.quiet = quiet
        self.metric = metric
        self._progress: Progress | None = None
        self._task = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def phase_started(self, label: str, total: int) -> None:
        if self.quiet:
            return
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def phase_finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        shown = [f"{k} {_fmt(v)}" for k, v in row.items() if k not in ("epoch", "lr", "seconds")]
        self.console.print(f"epoch {row['epoch']:>3}  " + "  ".join(shown) + f"  ({row['seconds']:.1f}s)")


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
