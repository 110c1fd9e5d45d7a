"""Evaluate a model on one split: the task's metrics and a per-sample predictions table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from honed.data.dataset import ImageDataset
from honed.data.manifest import Manifest
from honed.metrics import classification_metrics, regression_metrics
from honed.data.pipeline import BatchPipeline
from honed.training.loop import predict_outputs
from honed.runtime import Runtime


def evaluate_split(model, loader, dataset: ImageDataset, manifest: Manifest, *, runtime: Runtime,
                   pipeline: BatchPipeline) -> tuple[dict[str, float], pd.DataFrame]:
    outputs = predict_outputs(model, loader, runtime=runtime, pipeline=pipeline, task=manifest.task).numpy()
    targets = np.asarray(dataset.targets)
    return score_outputs(outputs, targets, manifest.task), predictions_table(
        dataset.paths, outputs, targets, manifest)


def score_outputs(outputs: np.ndarray, targets: np.ndarray, task: str) -> dict[str, float]:
    if task == "classify":
        scores = classification_metrics(outputs, targets)
        return {**scores, "loss": scores["log_loss"]}
    scores = regression_metrics(outputs, targets)
    return {**scores, "loss": float(((outputs.reshape(targets.shape) - targets) ** 2).mean())}


def predictions_table(paths, outputs: np.ndarray, targets: np.ndarray, manifest: Manifest) -> pd.DataFrame:
    """One row per sample: path, target, prediction, loss, and the probability of every class."""
    frame = pd.DataFrame({"path": list(paths)})
    if manifest.task == "classify":
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
