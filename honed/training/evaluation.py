"""Evaluate a model on one split during training: the task's metrics and a per-sample predictions table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from honed.data.dataset import ImageDataset
from honed.data.manifest import Manifest
from honed.artifacts.predictions import predictions_table
from honed.tasks import get_task
from honed.data.pipeline import BatchPipeline
from honed.training.loop import predict_outputs
from honed.runtime import Runtime


def evaluate_split(model, loader, dataset: ImageDataset, manifest: Manifest, *, runtime: Runtime,
                   pipeline: BatchPipeline) -> tuple[dict[str, float], pd.DataFrame]:
    outputs = predict_outputs(model, loader, runtime=runtime, pipeline=pipeline, task=manifest.task).numpy()
    targets = np.asarray(dataset.targets)
    return get_task(manifest.task).score(outputs, targets), predictions_table(
        dataset.paths, outputs, targets, manifest)
