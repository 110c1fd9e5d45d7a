"""Slices of the validation data where the model fails most (by class, by original image size), and the
train/validation gap: the evidence that is not a probe."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from honed.analyze.image_sizes import read_sizes
from honed.analyze.sensitivity import difference_interval
from honed.analyze.ranking import EXAMPLES, MIN_SLICE, SLICE_SHARE
from honed.metrics import best_epoch_row
from honed.tasks import get_task


def slice_row(name: str, kind: str, inside: np.ndarray, failures: np.ndarray, paths: Sequence[str], *,
              headroom: float, seed: int) -> dict:
    """Failure inside a slice vs the rest, the difference's interval, and failing examples."""
    diff, low, high = difference_interval(failures[inside], failures[~inside], seed=seed)
    examples = [paths[i] for i in np.nonzero(inside & (failures > 0))[0][:EXAMPLES]]
    return {"name": name, "kind": kind, "n": int(inside.sum()), "failure": float(failures[inside].mean()),
            "rest_failure": float(failures[~inside].mean()), "difference": diff, "ci": [low, high],
            "excess": float(np.clip(low / headroom, 0, 1)) if np.isfinite(low) else 0.0, "examples": examples}


def class_slices(targets: np.ndarray, classes: Sequence[str], failures: np.ndarray, paths: Sequence[str], *,
                 headroom: float, seed: int) -> list[dict]:
    """One slice per class with at least MIN_SLICE validation images, worst first."""
    rows = [slice_row(f"class {name}", "class", targets == index, failures, paths, headroom=headroom, seed=seed + index)
            for index, name in enumerate(classes) if MIN_SLICE <= int((targets == index).sum()) < len(targets)]
    return sorted(rows, key=lambda row: -row["failure"])


def image_size_slice(paths: Sequence[str], failures: np.ndarray, *, headroom: float, seed: int) -> dict | None:
    """The smallest quarter of original images (by pixel count, read from file headers), when sizes vary."""
    sizes = read_sizes(paths)
    if sizes is None:
        return None
    pixels = sizes.prod(axis=1)
    if len(pixels) < 2 * MIN_SLICE or np.unique(pixels).size < 2:
        return None
    order = np.argsort(pixels, kind="stable")
    inside = np.zeros(len(pixels), bool)
    inside[order[:max(MIN_SLICE, int(round(SLICE_SHARE * len(pixels))))]] = True
    row = slice_row("small original images", "image size", inside, failures, paths, headroom=headroom, seed=seed)
    row["max_side"] = int(np.sqrt(pixels[inside].max()))
    return row


def train_val_gap(train_failure: float, val_failure: float, *, headroom: float, task: str,
                  history: pd.DataFrame | None, metric: str) -> dict:
    """The gap between training and validation images, measured here and as logged in metrics.csv."""
    gap = {"train_failure": train_failure, "val_failure": val_failure,
           "relative_gap": float(np.clip((val_failure - train_failure) / headroom, 0, 1))}
    if get_task(task).is_classification:  # failure is the error rate: accuracy is its complement
        gap["train_accuracy"], gap["val_accuracy"] = 1 - train_failure, 1 - val_failure
    if history is not None and len(history) and {"train_loss", "val_loss"} <= set(history.columns):
        best = best_epoch_row(history.to_dict("records"), metric)
        gap.update({"epoch": int(best["epoch"]), "train_loss": float(best["train_loss"]),
                    "val_loss": float(best["val_loss"])})
    return gap
