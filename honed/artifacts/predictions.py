"""A run's per-image predictions table (``predictions_val.parquet``, ``predictions_test.parquet``): what error
analysis, ensembles and reports read back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class ValidationOutputs:
    """A run's validation predictions as arrays (``predictions_val.parquet``, in the table's order)."""

    paths: list[str]
    targets: np.ndarray  # class indices, or values [N, T]
    outputs: np.ndarray  # probabilities [N, C], or values [N, T]
    task: str

    def aligned_to(self, paths: list[str]) -> ValidationOutputs:
        """The same rows in the order of ``paths`` (KeyError when one is missing)."""
        where = {p: i for i, p in enumerate(self.paths)}
        order = np.array([where[p] for p in paths], dtype=int)
        return ValidationOutputs(list(paths), self.targets[order], self.outputs[order], self.task)


def validation_outputs(run_dir: Path) -> ValidationOutputs:
    """A run's validation predictions: what a paired comparison of two runs on the same images needs."""
    table = pd.read_parquet(Path(run_dir) / "predictions_val.parquet")
    paths = table["path"].astype(str).tolist()
    probabilities = [c for c in table.columns if c.startswith("p:")]
    if probabilities:
        classes = [c[2:] for c in probabilities]
        targets = table["target"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
        return ValidationOutputs(paths, targets, table[probabilities].to_numpy(np.float64), "classify")
    values = sorted(c for c in table.columns if c.startswith("target:"))
    predicted = ["prediction:" + c.split(":", 1)[1] for c in values]
    return ValidationOutputs(paths, table[values].to_numpy(np.float64), table[predicted].to_numpy(np.float64),
                             "regress")
