"""Metrics chosen by the task: accuracy, macro-F1 and log loss for classification; MAE and RMSE for regression."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import math

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss

GREATER_IS_BETTER = {"accuracy": True, "macro_f1": True, "log_loss": False, "mae": False, "rmse": False,
                     "loss": False}


def classification_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``probs`` [N, C] (rows sum to 1), ``targets`` [N] class indices."""
    predicted = probs.argmax(axis=1)
    labels = np.arange(probs.shape[1])
    return {
        "accuracy": float(accuracy_score(targets, predicted)),
        "macro_f1": float(f1_score(targets, predicted, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(targets, _bounded(probs), labels=labels)),
    }


def _bounded(probs: np.ndarray) -> np.ndarray:
    """Probabilities kept off zero (a confident miss costs -log(1e-7), not infinity), rows summing to 1 again:
    clipping alone breaks the sum, which scikit-learn warns about and then renormalizes anyway."""
    bounded = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1.0)
    return bounded / bounded.sum(axis=1, keepdims=True)


def regression_metrics(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``predicted`` and ``targets`` [N, T]; averaged over targets."""
    error = predicted.reshape(targets.shape) - targets
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean()))}


def is_better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new > old if GREATER_IS_BETTER[metric] else new < old


TIE_BREAK = "val_loss"  # lower wins between epochs that score the same on the main metric


def better_epoch(metric: str, new: Mapping, old: Mapping | None) -> bool:
    """Whether epoch row ``new`` beats ``old`` on ``metric``; on an exact tie, the lower validation loss wins.

    Accuracy on a small validation set moves in steps of one image: on 49 photos it stayed level for ten epochs
    while the loss fell from 0.214 to 0.189, and "the first of the best" picked the least trained epoch (whose
    count the refit then reused). Rows without ``metric`` (no validation) count as better, so the last wins."""
    if old is None or metric not in new or metric not in old or _missing(old[metric]):
        return True
    if new[metric] == old[metric] and not _missing(new.get(TIE_BREAK)) and not _missing(old.get(TIE_BREAK)):
        return new[TIE_BREAK] < old[TIE_BREAK]
    return is_better(metric, new[metric], old[metric])


def best_epoch_row(rows: Iterable[Mapping], metric: str) -> Mapping | None:
    """The best of the epoch rows by ``better_epoch`` (None when there are none)."""
    best = None
    for row in rows:
        if better_epoch(metric, row, best):
            best = row
    return best


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
