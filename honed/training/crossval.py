"""k-fold cross-validation: one run per fold, and a parent row with the mean and spread of the scores."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from honed.config import RunConfig
from honed.metrics import GREATER_IS_BETTER
from honed.tracking.ledger import Ledger, RunRecord
from honed.training.callbacks import Callback
from honed.training.fit import train
from honed.training.result import TrainResult
from honed.progress import LogReporter, Reporter


@dataclass
class CrossValResult:
    name: str
    folds: list[TrainResult]
    mean: dict[str, float]
    std: dict[str, float]


def cross_validate(config: RunConfig, *, manifest=None, reporter: Reporter | None = None,
                   callbacks: Sequence[Callback] = ()) -> CrossValResult:
    """Train ``config.data.folds`` runs named ``<name>-fold<k>``, children of a ``cv`` row named ``<name>``;
    ``callbacks`` hear of each fold's run."""
    reporter = reporter or LogReporter()
    workspace = Path(config.workspace)
    with Ledger(workspace) as ledger:
        base = config.name or ledger.new_name(f"{config.model.name}-cv")
    results = []
    for fold in range(config.data.folds):
        fold_config = copy.deepcopy(config)
        fold_config.name, fold_config.parent = f"{base}-fold{fold}", base
        fold_config.change = f"fold {fold} of {config.data.folds}"
        fold_config.data.fold = fold
        reporter.message(f"fold {fold + 1}/{config.data.folds}")
        results.append(train(fold_config, manifest=manifest, reporter=reporter, callbacks=callbacks))
    keys = [k for k in results[0].metrics if k not in ("epoch", "lr", "seconds")]
    mean = {k: float(np.mean([r.metrics[k] for r in results])) for k in keys}
    std = {k: float(np.std([r.metrics[k] for r in results])) for k in keys}
    metric = results[0].metric
    with Ledger(workspace) as ledger:
        ledger.upsert(RunRecord(
            name=base, kind="cv", status="done", task=config.data.task, model=config.model.name, metric=metric,
            score=mean[metric], greater_is_better=GREATER_IS_BETTER[metric],
            metrics={**mean, **{f"{k}_std": v for k, v in std.items()}},
            duration_s=sum(float(r.history["seconds"].sum()) for r in results),
            change=f"{config.data.folds}-fold cross-validation"))
    return CrossValResult(base, results, mean, std)
