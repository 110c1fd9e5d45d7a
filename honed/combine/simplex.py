"""Fitting member (or TTA view) weights on validation predictions, and scoring them without leaking.

Weights live on the simplex (non-negative, summing to 1) through a softmax parametrisation and minimise the
log loss of the weighted mean probability (classification) or the squared error of the weighted mean value
(regression). A score measured on the rows the weights were fitted on flatters them, so the validation
score of a fitted rule is cross-fitted: the rows are split into K folds and each fold is combined with
weights fitted on the other folds. The weights kept for later use (test, deployment) are fitted on all rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from honed.combine.rules import CombinationRule, get_method
from honed.errors import HonedError
from honed.tasks import get_task

EPS = 1e-7  # probability floor in the log loss, as honed.metrics uses


def fit_simplex_weights(outputs: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """Weights ``[M]`` on the simplex for ``[M, N, C]`` outputs: log loss (classify) or MSE (regress)."""
    from scipy.optimize import minimize

    outputs = outputs.astype(np.float64)
    members = outputs.shape[0]
    if members == 1:
        return np.ones(1)
    if get_task(task).is_classification:  # log loss of the true class's mixed probability; else MSE
        picked = outputs[:, np.arange(outputs.shape[1]), np.asarray(targets, dtype=np.int64)]  # [M, N]

        def loss_and_grad_w(w: np.ndarray) -> tuple[float, np.ndarray]:
            p = np.clip(w @ picked, EPS, None)
            return float(-np.log(p).mean()), -(picked / p).mean(axis=1)
    else:
        y = np.asarray(targets, dtype=np.float64).reshape(outputs.shape[1:])

        def loss_and_grad_w(w: np.ndarray) -> tuple[float, np.ndarray]:
            residual = np.tensordot(w, outputs, axes=1) - y
            return float((residual ** 2).mean()), 2 * (outputs * residual).mean(axis=(1, 2))

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        w = _softmax(z)
        loss, grad_w = loss_and_grad_w(w)
        return loss, w * (grad_w - w @ grad_w)  # chain rule through the softmax

    result = minimize(objective, np.zeros(members), jac=True, method="L-BFGS-B")
    return _softmax(result.x)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


@dataclass
class CrossFit:
    """Cross-fitted combination of validation rows, and the weights fitted on all of them."""

    outputs: np.ndarray  # [N, C]: each row combined with weights that never saw it
    weights: np.ndarray  # [M]: fitted on every row, for test and deployment
    fold_weights: list[np.ndarray]  # [M] per fold, for the record
    folds: int


def cross_fit(outputs: np.ndarray, targets: np.ndarray, task: str, *, folds: int = 5, seed: int = 0) -> CrossFit:
    """K-fold cross-fitting over the rows of ``[M, N, C]`` outputs (see the module docstring)."""
    from sklearn.model_selection import KFold

    n = outputs.shape[1]
    if n < 2:
        raise HonedError(f"fitting weights needs at least 2 validation rows, got {n}")
    if folds < 2:
        raise HonedError(f"cross-fitting needs at least 2 folds, got {folds}")
    folds = min(folds, n)
    combined = np.zeros(outputs.shape[1:], dtype=np.float64)
    fold_weights = []
    for fit_rows, score_rows in KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)):
        w = fit_simplex_weights(outputs[:, fit_rows], np.asarray(targets)[fit_rows], task)
        combined[score_rows] = np.tensordot(w, outputs[:, score_rows].astype(np.float64), axes=1)
        fold_weights.append(w)
    return CrossFit(combined, fit_simplex_weights(outputs, targets, task), fold_weights, folds)


def fit_rule(method: str, outputs: np.ndarray, targets: np.ndarray, task: str, *,
             weights: np.ndarray | None = None, folds: int = 5, seed: int = 0
             ) -> tuple[CombinationRule, np.ndarray, CrossFit | None]:
    """The rule for ``method`` on validation outputs ``[M, N, C]``, and the validation outputs it is scored on.

    Fitted methods (``weighted``) get weights fitted on all rows and are scored cross-fitted; other methods
    use ``weights`` as given (None: equal) and are scored on their plain combination.
    """
    spec = get_method(method, task)
    if spec.fitted and weights is None:
        fit = cross_fit(outputs, targets, task, folds=folds, seed=seed)
        return CombinationRule(method, tuple(float(w) for w in fit.weights)), fit.outputs, fit
    rule = CombinationRule(method, None if weights is None else tuple(float(w) for w in weights))
    return rule, rule.combine(outputs), None
