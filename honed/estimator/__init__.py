"""Estimators in scikit-learn's shape: ``ImageClassifier`` and ``ImageRegressor`` train one run each, as
``honed train`` does, and predict, evaluate and export it; ``load`` gives a fitted one back from disk."""

from __future__ import annotations

from pathlib import Path

from honed.estimator.base import ImageEstimator, TimeLimit
from honed.estimator.estimators import ImageClassifier, ImageRegressor

__all__ = ["ImageClassifier", "ImageEstimator", "ImageRegressor", "TimeLimit", "load"]


def load(path: str | Path, *, device: str = "auto") -> ImageEstimator:
    """A fitted ``ImageClassifier`` or ``ImageRegressor`` (whichever the model is) from a run folder or a bundle."""
    from honed.predict import load as load_predictor

    predictor = load_predictor(path, device=device)
    kind = ImageClassifier if predictor.task_type.is_classification else ImageRegressor
    return kind.from_predictor(predictor, path, device=device)
