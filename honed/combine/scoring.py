"""Scores and targets in the form ensembles and TTA wrappers share."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from honed.errors import HonedError
from honed.tasks import get_task


def score(outputs: np.ndarray, targets: np.ndarray, task: str) -> dict[str, float]:
    """The task's metrics (as training reports them, without the duplicate 'loss'), on float32 outputs: the
    precision predictions are stored in, so sums of probabilities are judged at that precision."""
    scores = get_task(task).score(np.asarray(outputs, dtype=np.float32), targets)
    return {k: v for k, v in scores.items() if k != "loss"}


def encode_targets(y: Any, task: str, classes: Sequence[str]) -> np.ndarray:
    """Class names or indices -> indices (classification); values -> ``[N, T]`` floats (regression)."""
    y = np.asarray(y)
    if not get_task(task).is_classification:
        return y.reshape(len(y), -1).astype(np.float64)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in y} - set(index))
    if unknown:
        raise HonedError(f"labels {unknown[:5]} are not classes of this model ({', '.join(index)})")
    return np.asarray([index[str(v)] for v in y], dtype=np.int64)
