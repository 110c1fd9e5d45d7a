"""``VotingEnsemble``: trained Predictors combined by a rule, with the scikit-learn interface.

    ensemble = VotingEnsemble([honed.load("a"), honed.load("b")], method="weighted").fit(val_paths, val_labels)
    ensemble.predict_proba(paths); ensemble.predict(paths); ensemble.score(test_paths, test_labels)

The members are already trained (scikit-learn's "prefit"); ``fit`` only fits the rule's weights (for
``weighted``) on the images given, with their cross-fitted score in ``cv_score_``, and for soft votes a
temperature on the combined probabilities (``temperature_``, used by ``predict_proba``; argmax unchanged).
The constructor stores its arguments unchanged, so ``sklearn.base.clone`` works. ``create_ensemble`` is the workspace-level version:
it uses the predictions the member runs saved, and records the ensemble as a run.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from honed.combine.calibration import CALIBRATED_METHODS, apply_temperature, fit_calibration
from honed.combine.rules import CombinationRule, default_method, get_method
from honed.combine.scoring import encode_targets, score
from honed.predict.ensemble_predictor import EnsemblePredictor
from honed.errors import HonedError
from honed.tasks import Task, get_task


class VotingEnsemble(BaseEstimator):
    """Predictors (each with its own preprocessing) voted by ``method``: soft, hard, weighted or mean."""

    def __init__(self, members: Sequence[Any] = (), *, method: str = "auto", weights: Sequence[float] | None = None,
                 folds: int = 5, seed: int = 0, batch_size: int = 64, workers: int = 0):
        self.members = members
        self.method = method
        self.weights = weights
        self.folds = folds
        self.seed = seed
        self.batch_size = batch_size
        self.workers = workers

    def fit(self, images, y) -> VotingEnsemble:
        """Fit the rule on ``images`` (e.g. the validation split): weights for ``weighted``, none otherwise."""
        from honed.combine.simplex import fit_rule

        images = list(images)
        outputs = self.member_outputs(images)
        targets = self._targets(y)
        rule, combined, _ = fit_rule(self._method(), outputs, targets, self._task, folds=self.folds, seed=self.seed,
                                     weights=None if self.weights is None else np.asarray(self.weights))
        self.rule_ = rule
        self.classes_ = np.asarray(self.members[0].classes)
        self.cv_score_ = score(combined, targets, self._task)
        calibration = None
        if self._task_type.is_classification and rule.method in CALIBRATED_METHODS:
            calibration = fit_calibration(rule.combine(outputs), targets)  # on the combined log-probabilities
        self.temperature_ = None if calibration is None else calibration.temperature
        return self

    def to_predictor(self) -> EnsemblePredictor:
        """The ensemble as a Predictor (a table per prediction, usable wherever ``honed.load`` is)."""
        return EnsemblePredictor(list(self.members), self._rule(), temperature=getattr(self, "temperature_", None))

    def member_outputs(self, images) -> np.ndarray:
        """``[M, N, C]``: every member's probabilities (values) for every input, at its own preprocessing."""
        if len(self.members) < 1:
            raise HonedError("a VotingEnsemble needs members: trained Predictors, e.g. honed.load(run)")
        images = list(images)
        return np.stack([m.predict_outputs(images, batch_size=self.batch_size, workers=self.workers)[0]
                         for m in self.members])

    def predict_proba(self, images) -> np.ndarray:
        if not self._task_type.is_classification:
            raise HonedError("predict_proba is for classification members: use predict")
        return apply_temperature(self._rule().combine(self.member_outputs(images)), getattr(self, "temperature_", None))

    def predict(self, images) -> np.ndarray:
        """Class names (classification, the tie rule included) or values ``[N, T]`` (regression)."""
        outputs = self._rule().combine(self.member_outputs(images))
        if self._task_type.is_classification:
            return np.asarray(self.members[0].classes)[outputs.argmax(axis=1)]
        return outputs

    def score(self, images, y) -> float:
        """Accuracy (classification) or R^2 (regression)."""
        outputs = self._rule().combine(self.member_outputs(images))
        if self._task_type.is_classification:
            return float((outputs.argmax(axis=1) == self._targets(y)).mean())
        from sklearn.metrics import r2_score

        return float(r2_score(self._targets(y), outputs))

    @property
    def _task(self) -> str:
        return self.members[0].task

    @property
    def _task_type(self) -> Task:
        return get_task(self._task)

    def _method(self) -> str:
        method = default_method(self._task) if self.method in ("", "auto") else self.method
        get_method(method, self._task)
        return method

    def _rule(self) -> CombinationRule:
        if hasattr(self, "rule_"):
            return self.rule_
        method = self._method()
        if get_method(method).fitted and self.weights is None:
            raise HonedError(f"method {method!r} fits weights: call fit(validation images, targets) first")
        return CombinationRule(method, None if self.weights is None else tuple(float(w) for w in self.weights))

    def _targets(self, y) -> np.ndarray:
        return encode_targets(y, self._task, self.members[0].classes)
