"""Probe heads are models: the registry of heads fitted on frozen features, and the scikit-learn linear ones.

``HEADS`` maps a ``--head-model`` name to a :class:`HeadSpec`: the tasks it serves and its fitting function
``fit(features [N, F], targets, *, task, outputs, seed, **options) -> FittedHead``. The linear heads below are
fitted on standardized features and folded back into raw feature space, so each is exactly the network's
last linear layer (``honed.training.probe`` writes it there):

- ``logreg`` (classification default): multinomial logistic regression, C chosen by cross-validation. Its
  probabilities are softmax(W x + b).
- ``svm``: a linear SVM (one-vs-rest, C cross-validated) with calibrated probabilities from one temperature
  fitted on out-of-fold decision values (Platt scaling for several classes): softmax(T (W x + b)), still
  exactly a linear layer. scikit-learn's CalibratedClassifierCV is not, so it is not used.
- ``ridge`` (regression default) and ``svr`` (a linear SVR per target).

The ``gbm`` head (trees, not a layer) registers here too, from ``honed.models.heads.gbm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from honed.errors import HonedError
from honed.registry import Registry
from honed.tasks import get_task

C_GRID = (0.01, 0.1, 1.0)  # logreg / svm inverse regularization, on standardized features; chosen by CV
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0)  # ridge strengths, chosen by (efficient leave-one-out) CV
CV_FOLDS = 3  # folds for choosing C and fitting the SVM temperature; fewer when a class has fewer images
ABSENT_CLASS_BIAS = -30.0  # logit of a class with no training image: probability ~1e-13


@dataclass
class FittedHead:
    """A head fitted on features: linear (``weight``/``bias`` in raw feature space) or not (gbm)."""

    kind: str
    predict: Callable[[np.ndarray], np.ndarray]  # features -> probabilities [N, C] or values [N, T]
    weight: np.ndarray | None = None  # [outputs, features]
    bias: np.ndarray | None = None  # [outputs]
    details: dict = field(default_factory=dict)  # chosen hyperparameters and their CV scores
    file: bytes | None = None  # a head that is no linear layer, serialized as data (gbm: an ONNX graph)


HeadFit = Callable[..., FittedHead]  # (features, targets, *, task, outputs, seed, **options) -> FittedHead


@dataclass(frozen=True)
class HeadSpec:
    """One probe head: how to fit it, the tasks it serves, and the tasks it is the default for."""

    name: str
    fit: HeadFit  # takes the options it uses (gbm: rounds, leaf) and ignores the others
    tasks: tuple[str, ...]  # "classify", "regress"
    default_for: tuple[str, ...] = ()  # tasks for which an empty --head-model picks this head


HEADS: Registry[HeadSpec] = Registry("probe head")  # filled by register_head; gbm registers from heads.gbm


def register_head(name: str, *, tasks: tuple[str, ...], default_for: tuple[str, ...] = (),
                  override: bool = False) -> Callable[[HeadFit], HeadFit]:
    """Register ``fit`` as the head ``name``; registering a name twice is an error unless ``override``."""

    def decorator(fit: HeadFit) -> HeadFit:
        HEADS.register(name, HeadSpec(name, fit, tuple(tasks), tuple(default_for)), override=override)
        return fit

    return decorator


def head_kind(task: str, head_model: str) -> str:
    """The head a config asks for (empty: the task's default), checked against the task."""
    allowed = [n for n in HEADS.names() if task in HEADS[n].tasks]
    kind = head_model or next(n for n in allowed if task in HEADS[n].default_for)
    HEADS.get(kind)  # an unknown name lists the valid ones
    if kind not in allowed:
        raise HonedError(f"--head-model {kind} does not fit --task {task}: use one of {', '.join(allowed)}")
    return kind


def sklearn_threads() -> Any:
    """One BLAS/OpenMP thread for scikit-learn's small fits: on a busy machine, spinning BLAS threads make a
    logistic regression on 200 x 1280 features take seconds instead of 0.1 s (measured: 3 s vs 0.1 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------ linear heads


def _linear_head(kind: str, fit_scaled: Callable, features: np.ndarray, targets: np.ndarray, *, task: str,
                 seed: int, outputs: int) -> FittedHead:
    """Standardize, fit, fold the standardization into the layer: a head that is one linear layer."""
    mu, sigma = features.mean(axis=0), features.std(axis=0) + 1e-6
    weight, bias, details = fit_scaled((features - mu) / sigma, targets, outputs, seed)
    weight, bias = weight / sigma, bias - (weight / sigma) @ mu
    weight, bias = weight.astype(np.float32), bias.astype(np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        logits = x @ weight.T + bias
        return softmax(logits) if get_task(task).is_classification else logits

    return FittedHead(kind, predict, weight, bias, details)


@register_head("logreg", tasks=("classify",), default_for=("classify",))
def fit_logreg(features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int, seed: int = 0,
               **_options: Any) -> FittedHead:
    return _linear_head("logreg", _logreg, features, targets.astype(int), task=task, seed=seed, outputs=outputs)


@register_head("svm", tasks=("classify",))
def fit_svm(features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int, seed: int = 0,
            **_options: Any) -> FittedHead:
    return _linear_head("svm", _svm, features, targets.astype(int), task=task, seed=seed, outputs=outputs)


@register_head("ridge", tasks=("regress",), default_for=("regress",))
def fit_ridge(features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int, seed: int = 0,
              **_options: Any) -> FittedHead:
    return _linear_head("ridge", _ridge, features, targets.reshape(len(targets), -1), task=task, seed=seed,
                        outputs=outputs)


@register_head("svr", tasks=("regress",))
def fit_svr(features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int, seed: int = 0,
            **_options: Any) -> FittedHead:
    return _linear_head("svr", _svr, features, targets.reshape(len(targets), -1), task=task, seed=seed,
                        outputs=outputs)


def _folds(targets: np.ndarray, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    if targets.ndim == 1:
        smallest = min(int(c) for c in np.bincount(targets) if c > 0)
        k = min(CV_FOLDS, smallest)
        return StratifiedKFold(k, shuffle=True, random_state=seed) if k >= 2 else None
    return KFold(min(CV_FOLDS, len(targets)), shuffle=True, random_state=seed) if len(targets) >= 4 else None


def _choose_c(make, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, dict]:
    """The C of ``C_GRID`` with the best cross-validated accuracy (the middle one when CV is impossible)."""
    from sklearn.model_selection import cross_val_score

    folds = _folds(y, seed)
    if folds is None or len(np.unique(y)) < 2:
        return C_GRID[len(C_GRID) // 2], {}
    scores = {c: float(cross_val_score(make(c), x, y, cv=folds).mean()) for c in C_GRID}
    return max(scores, key=scores.get), {f"cv_accuracy_C={c}": s for c, s in scores.items()}


def _logreg(x: np.ndarray, y: np.ndarray, outputs: int, seed: int):
    from sklearn.linear_model import LogisticRegression

    def make(c):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed)

    c, scores = _choose_c(make, x, y, seed)
    model = make(c).fit(x, y) if len(np.unique(y)) > 1 else None
    weight, bias = _full_layer(model, outputs, x.shape[1], y)
    return weight, bias, {"C": c, **scores}


def _svm(x: np.ndarray, y: np.ndarray, outputs: int, seed: int):
    from scipy.optimize import minimize_scalar
    from sklearn.model_selection import cross_val_predict
    from sklearn.svm import LinearSVC

    def make(c):
        return LinearSVC(C=c, max_iter=5000, random_state=seed)

    c, scores = _choose_c(make, x, y, seed)
    if len(np.unique(y)) < 2:
        weight, bias = _full_layer(None, outputs, x.shape[1], y)
        return weight, bias, {"C": c}
    folds = _folds(y, seed)
    model = make(c).fit(x, y)
    temperature = 1.0
    if folds is not None:  # one temperature on out-of-fold decision values: calibrated, still linear
        decision = _two_columns(cross_val_predict(make(c), x, y, cv=folds, method="decision_function"))
        index = np.searchsorted(model.classes_, y)
        result = minimize_scalar(lambda t: _nll(t * decision, index), bounds=(1e-2, 1e2), method="bounded")
        temperature = float(result.x)
    weight, bias = _full_layer(model, outputs, x.shape[1], y, scale=temperature)
    return weight, bias, {"C": c, "temperature": temperature, **scores}


def _two_columns(decision: np.ndarray) -> np.ndarray:
    """Binary decision values d -> logits [-d/2, d/2], the form written into a two-output layer."""
    return np.stack([-decision / 2, decision / 2], axis=1) if decision.ndim == 1 else decision


def _nll(logits: np.ndarray, index: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(index)), index].mean())


def _full_layer(model, outputs: int, width: int, y: np.ndarray, scale: float = 1.0):
    """A linear classifier's coefficients as an [outputs, width] layer over every class of the data."""
    weight = np.zeros((outputs, width))
    bias = np.full(outputs, ABSENT_CLASS_BIAS)
    if model is None:  # a single class in the training data: it always wins
        bias[int(y[0])] = 0.0
        return weight, bias
    coef, intercept = model.coef_ * scale, np.atleast_1d(model.intercept_) * scale
    if len(model.classes_) == 2:  # one decision d for the second class: logits [-d/2, d/2]
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight[model.classes_] = coef
    bias[model.classes_] = intercept
    return weight, bias


def _standardized_targets(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    my, sy = y.mean(axis=0), y.std(axis=0) + 1e-12
    return (y - my) / sy, my, sy


def _ridge(x: np.ndarray, y: np.ndarray, outputs: int, seed: int):
    """Ridge on standardized targets; returned in the targets' own units."""
    from sklearn.linear_model import RidgeCV

    ys, my, sy = _standardized_targets(y)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(x, ys)
    coef, intercept = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
    return coef * sy[:, None], intercept * sy + my, {"alpha": model.alpha_}


def _svr(x: np.ndarray, y: np.ndarray, outputs: int, seed: int):
    """A linear SVR per target, on standardized targets; returned in the targets' own units."""
    from sklearn.svm import LinearSVR

    ys, my, sy = _standardized_targets(y)
    models = [LinearSVR(C=C_GRID[1], max_iter=5000, random_state=seed).fit(x, ys[:, t]) for t in range(y.shape[1])]
    coef = np.stack([m.coef_ for m in models])
    intercept = np.array([float(np.atleast_1d(m.intercept_)[0]) for m in models])
    return coef * sy[:, None], intercept * sy + my, {"C": C_GRID[1]}
