"""What training one run gives back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from honed.config import RunConfig


@dataclass
class TrainResult:
    name: str
    run_dir: Path
    metric: str
    score: float
    metrics: dict[str, float]  # the best epoch's validation metrics (+ test_* when a test split exists)
    best_epoch: int
    history: pd.DataFrame
    weights_digest: str  # of the final weights: equal on every rank of a data-parallel run
    config: RunConfig | None = None  # the config as the run settled it (name, preprocessing, ...)
