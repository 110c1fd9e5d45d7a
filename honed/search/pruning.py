"""Pruning: a Reporter that also tells the Optuna trial each epoch's validation metric."""

from __future__ import annotations

from typing import Any

import optuna

from honed.progress import Reporter


class TrialReporter:
    """Forwards everything to ``inner``; after each epoch reports ``metric`` to ``trial`` and raises
    ``optuna.TrialPruned`` when the study's pruner says the trial is behind the others at that epoch."""

    def __init__(self, inner: Reporter, trial: optuna.Trial, metric: str):
        self.inner = inner
        self.trial = trial
        self.metric = metric
        self.last_epoch = 0

    def message(self, text: str) -> None:
        self.inner.message(text)

    def phase_started(self, label: str, total: int) -> None:
        self.inner.phase_started(label, total)

    def advance(self, steps: int = 1) -> None:
        self.inner.advance(steps)

    def phase_finished(self) -> None:
        self.inner.phase_finished()

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.inner.epoch_finished(row)
        self.last_epoch = int(row["epoch"])
        self.trial.report(float(row[self.metric]), step=self.last_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {self.last_epoch}")
