"""Validation strategy: keep an explicit split, else a seeded stratified holdout or k-fold."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from honed.data.manifest import Manifest
from honed.errors import HonedError


def with_validation(manifest: Manifest, *, val_fraction: float = 0.2, folds: int = 1, fold: int = 0,
                    seed: int = 0, validation: bool = True) -> Manifest:
    """Return a Manifest whose frame has train and val rows (test rows untouched).

    An explicit ``val`` split is kept as it is unless k-fold is asked for, in which case train and val
    are pooled and fold ``fold`` of ``folds`` becomes validation. ``validation=False`` pools them all into
    train and leaves no validation split (a refit on every labelled image)."""
    frame = manifest.frame.copy()
    if not validation:
        frame.loc[frame["split"] == "val", "split"] = "train"
        return _replace(manifest, frame)
    if manifest.has_split("val") and folds == 1:
        return _replace(manifest, frame)
    pool = frame.index[frame["split"].isin(["train", "val"])].to_numpy()
    strata = frame.loc[pool, "label"].to_numpy() if manifest.task_type.is_classification else None
    if folds > 1:
        val_rows = pool[_fold_indices(strata, len(pool), folds, fold, seed)]
    else:
        val_rows = _holdout(pool, strata, val_fraction, seed)
    frame.loc[pool, "split"] = "train"
    frame.loc[val_rows, "split"] = "val"
    return _replace(manifest, frame)


def _holdout(pool: np.ndarray, strata, val_fraction: float, seed: int) -> np.ndarray:
    n_val = int(round(len(pool) * val_fraction))
    if n_val < 1 or n_val >= len(pool):
        raise HonedError(f"{len(pool)} training images are too few for a {val_fraction:.0%} validation holdout")
    stratify = strata
    if strata is not None:
        _, counts = np.unique(strata, return_counts=True)
        if counts.min() < 2 or n_val < len(counts):
            stratify = None  # too few per class to stratify: a plain seeded split still works
    _, val = train_test_split(pool, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(val)


def _fold_indices(strata, n: int, folds: int, fold: int, seed: int) -> np.ndarray:
    if folds > n:
        raise HonedError(f"--folds {folds} is more than the {n} training images")
    if strata is not None and np.unique(strata, return_counts=True)[1].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(n), strata))
    else:
        splits = list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    return splits[fold][1]


def _replace(manifest: Manifest, frame) -> Manifest:
    return Manifest(frame=frame, task=manifest.task, classes=manifest.classes,
                    target_columns=manifest.target_columns, name=manifest.name, datasets=manifest.datasets)
