"""``TTAClassifier``: test-time augmentation around a Predictor, with the scikit-learn interface.

    tta = TTAClassifier(honed.load("baseline"), views="flip,crops", aggregate="learned").fit(val_paths, val_labels)
    tta.predict_proba(paths); tta.predict(paths); tta.score(test_paths, test_labels)

The constructor only stores its arguments; ``fit`` is needed only for ``aggregate="learned"`` (one weight
per view, fitted on the images given, e.g. the validation split), and learned state ends in ``_``. It serves
regression runs too (``predict`` then returns values). ``to_setting()`` is what a bundle stores. A calibrated
predictor's temperature scales the aggregated probabilities, as ``Predictor.predict_batch`` does with TTA.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator

from honed.combine.calibration import apply_temperature
from honed.data.preprocess import to_unit_float
from honed.errors import HonedError
from honed.tta.setting import TTASetting, aggregate_outputs
from honed.tta.views import expand_views
from honed.tasks import Task, get_task


class TTAClassifier(BaseEstimator):
    """A Predictor whose every prediction is the aggregate of several views of each image."""

    def __init__(self, predictor, *, views: str | Sequence[str] = "flip", aggregate: str = "mean",
                 batch_size: int = 64, workers: int = 0):
        self.predictor = predictor
        self.views = views
        self.aggregate = aggregate
        self.batch_size = batch_size
        self.workers = workers

    # -------------------------------------------------------------------------------------------- fitting

    def fit(self, images, y=None) -> TTAClassifier:
        """Validate the settings; for ``learned``, fit one weight per view on ``images`` and targets ``y``."""
        names = expand_views(self.views)
        self.classes_ = np.asarray(self.predictor.classes)
        if self.aggregate == "learned":
            from honed.combine.simplex import fit_simplex_weights

            if y is None:
                raise HonedError("aggregate 'learned' fits a weight per view: give fit() images and their targets")
            outputs = self._outputs(self.view_outputs(images, names=names))
            self.weights_ = tuple(float(w) for w in fit_simplex_weights(outputs, self._targets(y), self._task))
        else:
            self.weights_ = None
        self.setting_ = TTASetting(names, self.aggregate, self.weights_)
        return self

    def to_setting(self) -> TTASetting:
        """The setting a Predictor or bundle applies (fitted weights included)."""
        if hasattr(self, "setting_"):
            return self.setting_
        if self.aggregate == "learned":
            raise HonedError("aggregate 'learned' needs fitted weights: call fit(validation images, targets) first")
        return TTASetting(expand_views(self.views), self.aggregate)

    def to_predictor(self):
        """A copy of the predictor that applies this TTA to everything it predicts."""
        predictor = copy.copy(self.predictor)
        predictor.tta = self.to_setting()
        return predictor

    # -------------------------------------------------------------------------------------------- predicting

    def view_outputs(self, images, *, names: Sequence[str] | None = None) -> np.ndarray:
        """Raw outputs ``[V, N, C]`` (logits or values) of every view of every input."""
        setting = TTASetting(tuple(names or expand_views(self.views)))
        chunks = []
        with torch.no_grad():
            for batch, errors in self.predictor.batches(images, batch_size=self.batch_size, workers=self.workers):
                if any(errors):
                    raise HonedError(f"cannot read an input ({next(e for e in errors if e)}): TTA needs every image")
                x = to_unit_float(batch.to(self.predictor.device))
                chunks.append(setting.view_outputs(x, self.predictor.logits).cpu().numpy())
        if not chunks:
            raise HonedError("no images given")
        return np.concatenate(chunks, axis=1)

    def predict_proba(self, images) -> np.ndarray:
        if not self._task.is_classification:
            raise HonedError("predict_proba is for classification runs: use predict")
        return self._predict(images)

    def predict(self, images) -> np.ndarray:
        """Class names (classification) or values ``[N, T]`` (regression)."""
        outputs = self._predict(images)
        return np.asarray(self.predictor.classes)[outputs.argmax(axis=1)] if self._task.is_classification else outputs

    def score(self, images, y) -> float:
        """Accuracy (classification) or R^2 (regression), as scikit-learn's classifiers and regressors score."""
        if self._task.is_classification:
            return float((self._predict(images).argmax(axis=1) == self._targets(y)).mean())
        from sklearn.metrics import r2_score

        return float(r2_score(self._targets(y), self._predict(images)))

    # -------------------------------------------------------------------------------------------- helpers

    @property
    def _task(self) -> Task:
        return get_task(self.predictor.task)

    def _predict(self, images) -> np.ndarray:
        setting = self.to_setting()
        raw = torch.from_numpy(self.view_outputs(images, names=setting.views))
        outputs = aggregate_outputs(raw, self._task.name, setting.aggregate, setting.weights).numpy()
        if not self._task.is_classification:
            return outputs
        # the predictor's temperature (None: uncalibrated), applied to the aggregate as Predictor does
        return apply_temperature(outputs, getattr(self.predictor, "temperature", None))

    def _outputs(self, raw: np.ndarray) -> np.ndarray:
        """Per-view probabilities (classification) or values, the form weights are fitted on."""
        return self._task.outputs(torch.from_numpy(raw), dim=2).numpy()

    def _targets(self, y: Any) -> np.ndarray:
        from honed.combine.scoring import encode_targets

        return encode_targets(y, self._task, self.predictor.classes)
