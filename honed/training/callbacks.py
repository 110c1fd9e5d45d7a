"""The named points where bookkeeping hangs on the training loop, as Lightning Fabric's callbacks.

The loop in ``honed.training.fit`` trains and evaluates; everything else a run leaves behind (its folder
and ledger row, cyclic snapshots, the weight average, TensorBoard/MLflow logs, the advisor's record) is a
``Callback`` called at five points, in the order they are listed:

    on_run_start(run)              the run's folder is claimed and its model built; before the first epoch
    on_epoch_end(run, end)         rank 0 evaluated an epoch (``end.is_best``: the best so far); before the
                                   checkpoint that names the epoch done, so the checkpoint comes last
    stop_reason(run, end)          after that checkpoint: why no further epoch should run ('' : go on),
                                   e.g. a time limit (honed.estimator); the run then ends as a finished one
    on_train_end(run, metrics)     the last epoch is done: may return changed metrics (SWA's average)
    on_run_end(run, metrics)       the final metrics, with the test split's
    on_failure(run, status)        "failed" or "interrupted": never raises over the run's own error

Callbacks run on rank 0 only; a hook a callback does not need is inherited as a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch.nn as nn

from honed.config import RunConfig
from honed.data.prepare import PreparedData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """What every hook may read about the run; fixed once training starts."""

    config: RunConfig  # the resolved config (a copy: the caller's is never changed)
    run_dir: Path
    data: PreparedData
    metric: str  # the validation metric that picks the best epoch
    model: nn.Module  # the bare model (not the data-parallel wrapper)
    resumed: bool
    started: float = field(default_factory=time.perf_counter)  # perf_counter the run's duration counts from

    @property
    def workspace(self) -> Path:
        return Path(self.config.workspace)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass(frozen=True)
class EpochEnd:
    """One evaluated epoch."""

    epoch: int
    row: dict  # the epoch's numbers: train_loss, the validation scores, lr, seconds
    predictions: pd.DataFrame | None  # its validation predictions (None without a validation split)
    is_best: bool  # the best validation score so far
    history: list[dict]  # every epoch's row so far (this one last)
    best_row: dict  # the row of the best epoch so far


class Callback:
    """A piece of bookkeeping; override the hooks it needs."""

    def on_run_start(self, run: RunInfo) -> None:
        pass

    def on_epoch_end(self, run: RunInfo, end: EpochEnd) -> None:
        pass

    def stop_reason(self, run: RunInfo, end: EpochEnd) -> str:
        return ""

    def on_train_end(self, run: RunInfo, metrics: dict) -> dict:
        return metrics

    def on_run_end(self, run: RunInfo, metrics: dict) -> None:
        pass

    def on_failure(self, run: RunInfo, status: str) -> None:
        pass


class CallbackList(Callback):
    """Several callbacks called in order; a failing ``on_failure`` is logged, not raised."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def on_run_start(self, run: RunInfo) -> None:
        for callback in self.callbacks:
            callback.on_run_start(run)

    def on_epoch_end(self, run: RunInfo, end: EpochEnd) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(run, end)

    def stop_reason(self, run: RunInfo, end: EpochEnd) -> str:
        return next((reason for reason in (c.stop_reason(run, end) for c in self.callbacks) if reason), "")

    def on_train_end(self, run: RunInfo, metrics: dict) -> dict:
        for callback in self.callbacks:
            metrics = callback.on_train_end(run, metrics)
        return metrics

    def on_run_end(self, run: RunInfo, metrics: dict) -> None:
        for callback in self.callbacks:
            callback.on_run_end(run, metrics)

    def on_failure(self, run: RunInfo, status: str) -> None:
        for callback in self.callbacks:
            try:
                callback.on_failure(run, status)
            except Exception as error:  # noqa: BLE001 - the run's own error is the one to see
                log.warning("%s could not record a %s run: %s", type(callback).__name__, status, error)

    @contextlib.contextmanager
    def reporting_failures(self, run: RunInfo):
        """Around a run: an interrupt or an error is told to ``on_failure`` ("interrupted" or "failed"), then
        goes on up."""
        try:
            yield
        except KeyboardInterrupt:
            self.on_failure(run, "interrupted")
            raise
        except Exception:
            self.on_failure(run, "failed")
            raise
