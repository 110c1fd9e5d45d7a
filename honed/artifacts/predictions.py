"""A run's per-image predictions table (``predictions_val.parquet``, ``predictions_test.parquet``): what error
analysis, ensembles and reports read back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from honed.data.manifest import Manifest


def predictions_table(paths, outputs: np.ndarray, targets: np.ndarray, manifest: Manifest) -> pd.DataFrame:
    """One row per sample: path, target, prediction, loss, and the probability of every class."""
    frame = pd.DataFrame({"path": list(paths)})
    if manifest.task_type.is_classification:  # targets are class indices; else values
        classes = np.asarray(manifest.classes)
        predicted = outputs.argmax(axis=1)
        frame["target"] = classes[targets]
        frame["prediction"] = classes[predicted]
        frame["confidence"] = outputs.max(axis=1)
        frame["loss"] = -np.log(np.clip(outputs[np.arange(len(targets)), targets], 1e-7, 1.0))
        for i, name in enumerate(manifest.classes):
            frame[f"p:{name}"] = outputs[:, i]
        return frame
    predicted = outputs.reshape(targets.shape)
    for i, name in enumerate(manifest.target_columns):
        frame[f"target:{name}"] = targets[:, i]
        frame[f"prediction:{name}"] = predicted[:, i]
    frame["loss"] = ((predicted - targets) ** 2).mean(axis=1)
    return frame
