"""Snapshots of a cyclic schedule (cosine with restarts): at the end of each cycle the weights and the
validation predictions, which ``honed.ensemble.snapshot`` later combines like separate runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch.nn as nn

from honed.artifacts.run_folder import save_predictions
from honed.training.callbacks import Callback, EpochEnd, RunInfo
from honed.training.checkpoint import save_weights


def snapshot_files(cycle: int) -> tuple[str, str]:
    """(weights, validation predictions) file names of the snapshot at the end of ``cycle`` (1-based)."""
    return f"snapshot-{cycle}.safetensors", f"snapshot-{cycle}.predictions_val.parquet"


def save_snapshot(run_dir: Path, cycle: int, model: nn.Module, predictions: pd.DataFrame) -> None:
    """Save the weights and validation predictions at the end of ``cycle``; predictions are written last."""
    weights, table = snapshot_files(cycle)
    save_weights(run_dir / weights, model)
    save_predictions(run_dir / table, predictions)


class CycleSnapshots(Callback):
    """``--schedule cyclic``: a snapshot at the end of each of ``cycles`` cycles of ``epochs`` epochs."""

    def __init__(self, *, epochs: int, cycles: int):
        self.epochs, self.cycles = epochs, cycles

    def on_epoch_end(self, run: RunInfo, end: EpochEnd) -> None:
        if end.epoch % (self.epochs // self.cycles) == 0:
            save_snapshot(run.run_dir, end.epoch * self.cycles // self.epochs, run.model, end.predictions)
