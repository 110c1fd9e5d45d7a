"""The run's own records as training callbacks: its folder, its temperature (``honed.combine.calibration``)
and ledger row (``honed.artifacts.run_folder``), and the ``--log`` loggers (``honed.tracking.loggers``)."""

from __future__ import annotations

import pandas as pd

from honed.artifacts import run_folder as runs
from honed.artifacts.run_folder import BEST_WEIGHTS, VAL_PREDICTIONS
from honed.artifacts.weights import save_weights
from honed.combine.calibration import calibrate_run
from honed.training.callbacks import Callback, EpochEnd, RunInfo
from honed.tracking.loggers import create_loggers


class RunRecords(Callback):
    """What reproduces the run, the best epoch's weights and predictions, the curves, and the ledger row:
    running at each epoch, then done, failed or interrupted. Files first, then the row that points at them."""

    def on_run_start(self, run: RunInfo) -> None:
        runs.start(run.workspace, run.run_dir, run.config, run.data.manifest, run.data.bad_files, run.metric,
                   resumed=run.resumed)

    def on_epoch_end(self, run: RunInfo, end: EpochEnd) -> None:
        if end.is_best:
            save_weights(run.run_dir / BEST_WEIGHTS, run.model)
            if end.predictions is not None:  # None: no validation split (a refit)
                runs.save_predictions(run.run_dir / VAL_PREDICTIONS, end.predictions)
        runs.save_history(run.run_dir, pd.DataFrame(end.history), run.metric)
        self._record(run, end.best_row, "running")

    def on_run_end(self, run: RunInfo, metrics: dict) -> None:
        calibrate_run(run.run_dir)  # the final predictions_val (best epoch or SWA average) are written by now
        self._record(run, metrics, "done")

    def on_failure(self, run: RunInfo, status: str) -> None:
        runs.mark(run.workspace, run.run_dir, status)

    @staticmethod
    def _record(run: RunInfo, metrics: dict, status: str) -> None:
        runs.record(run.workspace, run.run_dir, run.config, run.data.manifest, run.metric, metrics, status=status,
                    duration_s=run.elapsed())


class RunLoggers(Callback):
    """``--log``: each epoch's row to TensorBoard or MLflow, with the run's files (created on rank 0, where a
    missing package is an error before any training)."""

    def __init__(self, names: list[str]):
        self.loggers = create_loggers(names)

    def on_run_start(self, run: RunInfo) -> None:
        self.loggers.start(run.config, run.run_dir)

    def on_epoch_end(self, run: RunInfo, end: EpochEnd) -> None:
        self.loggers.log_epoch(end.row, end.epoch)

    def on_run_end(self, run: RunInfo, metrics: dict) -> None:
        self.loggers.finish(metrics, "done")

    def on_failure(self, run: RunInfo, status: str) -> None:
        self.loggers.finish({}, status)
