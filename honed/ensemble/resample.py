"""What bagging and boosting share: one prepared split, members trained on re-drawn training rows, and
predictions of any rows of the manifest by a member.

Every member sees the same validation (and test) rows; only its training rows are re-drawn. Members train one
after another on one device (spreading them over several devices is left to the caller: each member is an
independent ``honed.train`` call).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from honed.config import RunConfig
from honed.data.dataset import ImageDataset
from honed.data.loader import make_loader
from honed.data.manifest import Manifest
from honed.data.prepare import prepare_data
from honed.errors import HonedError
from honed.tracking.ledger import Ledger, check_name
from honed.training.fit import train
from honed.training.result import TrainResult
from honed.progress import Reporter


def ensemble_name(config: RunConfig, suffix: str) -> str:
    """The ensemble's name (given, or new from the model name), refused early if taken: before any training."""
    workspace = Path(config.workspace)
    with Ledger(workspace) as ledger:
        name = config.name or ledger.new_name(f"{config.model.name.replace('/', '-')}-{suffix}")
        check_name(name)
        if ledger.get(name) is not None or (workspace / name).exists():
            raise HonedError(f"run {name!r} already exists in {workspace}: choose another --name")
    return name


def prepared_manifest(config: RunConfig, manifest: Manifest | None) -> Manifest:
    """The data with its validation split fixed once, so every member is validated on the same rows."""
    return prepare_data(config.data, seed=config.train.seed, manifest=manifest).manifest


def with_training_rows(manifest: Manifest, rows: np.ndarray) -> Manifest:
    """The manifest whose training split is ``rows`` (indices into its training split, repeats allowed)."""
    train_rows = manifest.split("train")
    others = manifest.frame[manifest.frame["split"] != "train"]
    frame = pd.concat([train_rows.iloc[np.sort(rows)], others], ignore_index=True)
    return Manifest(frame=frame, task=manifest.task, classes=manifest.classes, target_columns=manifest.target_columns,
                    name=manifest.name, datasets=manifest.datasets)


def train_member(config: RunConfig, name: str, manifest: Manifest, *, change: str, seed: int,
                 reporter: Reporter) -> TrainResult:
    """One member: the ensemble's training settings, its own name, seed and training rows."""
    member = copy.deepcopy(config)
    member.name, member.change, member.train.seed = name, change, seed
    return train(member, manifest=manifest, reporter=reporter)


def predict_frame(predictor, frame: pd.DataFrame, manifest: Manifest, *, batch_size: int = 128,
                  workers: int = 0) -> np.ndarray:
    """A member's outputs on manifest rows (files or the user's in-memory datasets), at its own input size."""
    if frame.empty:
        width = manifest.num_outputs
        return np.zeros((0, width), np.float32)
    dataset = ImageDataset(frame, manifest.targets(frame), predictor.image_size, datasets=manifest.datasets)
    loader = make_loader(dataset, batch_size=batch_size, train=False, workers=workers)
    return np.concatenate([predictor.predict_batch(images) for images, _ in loader])
