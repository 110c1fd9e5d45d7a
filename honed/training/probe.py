"""The ``probe`` strategy: frozen features extracted once, a scikit-learn head fitted on them, the result a
normal honed run (config, metrics.csv, predictions, ledger row, weights) that predicts and exports as any other.

Features are the input of the network's last linear layer (``honed.models.features``: extracted once,
cached), so a head fitted on them is exactly that layer.

Heads (``--head-model``), all on standardized features:

- ``logreg`` (classification default): multinomial logistic regression, C chosen by cross-validation. Its
  probabilities are softmax(W x + b): exactly the last linear layer once the standardization is folded in.
- ``svm``: a linear SVM (one-vs-rest, C cross-validated) with calibrated probabilities from one temperature
  fitted on out-of-fold decision values (Platt scaling for several classes): softmax(T (W x + b)), still
  exactly a linear layer. scikit-learn's CalibratedClassifierCV is not, so it is not used.
- ``ridge`` (regression default) and ``svr`` (a linear SVR per target): linear, written into the layer too.
- ``gbm``: HistGradientBoosting on the features (``model.gbm_rounds`` iterations, as ``honed boost --method
  gbm --rounds`` sets them; a smaller min_samples_leaf on tiny data). Trees are not a linear layer, and honed
  never pickles, so a gbm run keeps the frozen network's weights and the head's training data
  (``probe_features.safetensors``): loading refits the same trees (see ``honed.models.heads.gbm``), so it
  predicts, exports as a bundle and joins ensembles; ONNX / TorchScript cannot hold the trees.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.prepare import PreparedData
from honed.errors import HonedError
from honed.data.cache import cache_root
from honed.artifacts import run_folder as runs
from honed.tracking.atomic import write_json
from honed.training.checkpoint import save_weights
from honed.training.evaluation import predictions_table, score_outputs
from honed.models.features import extract_features, last_linear
from honed.progress import Reporter
from honed.runtime import Runtime

if TYPE_CHECKING:
    from honed.training.fit import TrainResult

C_GRID = (0.01, 0.1, 1.0)  # logreg / svm inverse regularization, on standardized features; chosen by CV
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0)  # ridge strengths, chosen by (efficient leave-one-out) CV
CV_FOLDS = 3  # folds for choosing C and fitting the SVM temperature; fewer when a class has fewer images
GBM_ROUNDS = 100  # boosting iterations unless config.model.gbm_rounds (honed boost --method gbm --rounds) says
GBM_LEAF = 20  # scikit-learn's min_samples_leaf; fewer on tiny data (gbm_leaf), so the trees can split at all
ABSENT_CLASS_BIAS = -30.0  # logit of a class with no training image: probability ~1e-13
PROBE_FILE = "probe.json"


# ---------------------------------------------------------------------------------------------------- heads


@dataclass
class FittedHead:
    """A head fitted on features: linear (``weight``/``bias`` in raw feature space) or not (gbm)."""

    kind: str
    predict: Callable[[np.ndarray], np.ndarray]  # features -> probabilities [N, C] or values [N, T]
    weight: np.ndarray | None = None  # [outputs, features]
    bias: np.ndarray | None = None  # [outputs]
    details: dict = field(default_factory=dict)  # chosen hyperparameters and their CV scores


def head_kind(task: str, head_model: str) -> str:
    """The head a config asks for, checked against the task."""
    allowed = ("logreg", "svm", "gbm") if task == "classify" else ("ridge", "svr", "gbm")
    kind = head_model or allowed[0]
    if kind not in allowed:
        raise HonedError(f"--head-model {kind} does not fit --task {task}: use one of {', '.join(allowed)}")
    return kind


def fit_head(kind: str, features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int,
             seed: int = 0, rounds: int = GBM_ROUNDS, leaf: int | None = None) -> FittedHead:
    """Fit the scikit-learn head ``kind`` on ``features`` [N, F]; ``targets`` are class indices or [N, T].

    gbm only: ``rounds`` boosting iterations, ``leaf`` rows a leaf at least (None: ``gbm_leaf`` of N)."""
    with sklearn_threads():
        if kind == "gbm":
            return _fit_gbm(features, targets, task, outputs, seed, rounds,
                            gbm_leaf(len(features)) if leaf is None else leaf)
        return _fit_head(kind, features, targets, task=task, outputs=outputs, seed=seed)


def gbm_leaf(rows: int) -> int:
    """min_samples_leaf for ``rows`` training rows: scikit-learn's 20, or a tenth of the rows on tiny data."""
    return max(1, min(GBM_LEAF, rows // 10))


def sklearn_threads():
    """One BLAS/OpenMP thread for scikit-learn's small fits: on a busy machine, spinning BLAS threads make a
    logistic regression on 200 x 1280 features take seconds instead of 0.1 s (measured: 3 s vs 0.1 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _fit_head(kind: str, features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int,
              seed: int) -> FittedHead:
    mu, sigma = features.mean(axis=0), features.std(axis=0) + 1e-6
    scaled = (features - mu) / sigma
    if task == "classify":
        fit = _fit_logreg if kind == "logreg" else _fit_svm
        weight, bias, details = fit(scaled, targets.astype(int), outputs, seed)
    else:
        weight, bias, details = _fit_regressor(kind, scaled, targets.reshape(len(targets), -1), seed)
    weight, bias = weight / sigma, bias - (weight / sigma) @ mu  # fold the standardization into the layer
    weight, bias = weight.astype(np.float32), bias.astype(np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        logits = x @ weight.T + bias
        return _softmax(logits) if task == "classify" else logits

    return FittedHead(kind, predict, weight, bias, details)


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


def _fit_logreg(x: np.ndarray, y: np.ndarray, outputs: int, seed: int):
    from sklearn.linear_model import LogisticRegression

    def make(c):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed)

    c, scores = _choose_c(make, x, y, seed)
    model = make(c).fit(x, y) if len(np.unique(y)) > 1 else None
    weight, bias = _full_layer(model, outputs, x.shape[1], y)
    return weight, bias, {"C": c, **scores}


def _fit_svm(x: np.ndarray, y: np.ndarray, outputs: int, seed: int):
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


def _fit_regressor(kind: str, x: np.ndarray, y: np.ndarray, seed: int):
    """Ridge or a linear SVR per target, on standardized targets; returned in the targets' own units."""
    from sklearn.linear_model import RidgeCV
    from sklearn.svm import LinearSVR

    my, sy = y.mean(axis=0), y.std(axis=0) + 1e-12
    ys = (y - my) / sy
    if kind == "ridge":
        model = RidgeCV(alphas=RIDGE_ALPHAS).fit(x, ys)
        coef, intercept, details = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_), {"alpha": model.alpha_}
    else:
        models = [LinearSVR(C=C_GRID[1], max_iter=5000, random_state=seed).fit(x, ys[:, t]) for t in range(y.shape[1])]
        coef = np.stack([m.coef_ for m in models])
        intercept, details = np.array([float(np.atleast_1d(m.intercept_)[0]) for m in models]), {"C": C_GRID[1]}
    return coef * sy[:, None], intercept * sy + my, details


def _fit_gbm(features: np.ndarray, targets: np.ndarray, task: str, outputs: int, seed: int, rounds: int,
             leaf: int) -> FittedHead:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    options = dict(max_iter=rounds, early_stopping=False, random_state=seed, min_samples_leaf=leaf)
    if task == "classify":
        model = HistGradientBoostingClassifier(**options).fit(features, targets)

        def predict(x: np.ndarray) -> np.ndarray:
            out = np.zeros((len(x), outputs))
            out[:, model.classes_.astype(int)] = model.predict_proba(x)
            return out
    else:
        y = targets.reshape(len(targets), -1)
        models = [HistGradientBoostingRegressor(**options).fit(features, y[:, t]) for t in range(y.shape[1])]

        def predict(x: np.ndarray) -> np.ndarray:
            return np.stack([m.predict(x) for m in models], axis=1)

    return FittedHead("gbm", predict, details={"rounds": rounds, "min_samples_leaf": leaf})


def write_head(model: nn.Module, head: FittedHead) -> None:
    """Copy a linear head into the network's last linear layer: the saved weights then predict as fitted."""
    if head.weight is None:
        raise HonedError(f"a {head.kind} head is not a linear layer: it cannot be written into the network")
    layer = last_linear(model)
    if tuple(layer.weight.shape) != head.weight.shape:
        raise HonedError(f"probe head of shape {head.weight.shape} does not fit the layer {tuple(layer.weight.shape)}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(head.bias))
        elif np.any(head.bias != 0):
            raise HonedError("the last linear layer has no bias to hold the probe's intercept: use --strategy head")


# ---------------------------------------------------------------------------------------------------- the run


def train_probe(config: RunConfig, model: nn.Module, data: PreparedData, *, run_dir: Path, runtime: Runtime,
                reporter: Reporter, resume: bool = False) -> TrainResult:
    """Features of every split, a head fitted on the training ones, then the files of any honed run."""
    from honed.training.fit import TrainResult, _agree_across_ranks  # fit dispatches here: imported late

    if runtime.distributed:
        raise HonedError("the probe strategy extracts features and fits on one process: run it without torchrun")
    started = time.perf_counter()
    manifest, workspace, metric = data.manifest, Path(config.workspace), config.main_metric()
    kind = head_kind(manifest.task, config.model.head_model)
    runs.start(workspace, run_dir, config, manifest, data.bad_files, metric, resumed=resume)
    model.to(runtime.device)
    splits = [s for s in ("train", "val", "test") if manifest.has_split(s)]
    sets = {s: split_dataset(manifest, s, config.preprocess.image_size) for s in splits}
    counts = ", ".join(f"{len(sets[s])} {s}" for s in splits)
    reporter.message(f"probe: frozen {config.model.name} features of {counts} images at "
                     f"{config.preprocess.image_size}px, then a {kind} head")
    features = {s: extract_features(model, sets[s], mean=config.preprocess.mean, std=config.preprocess.std,
                                    device=runtime.device, batch_size=config.train.batch_size * 2,
                                    workers=config.train.workers, reporter=reporter, label=f"{s} features",
                                    cache_dir=cache_root()) for s in splits}
    extracted = time.perf_counter()
    targets = {s: np.asarray(sets[s].targets) for s in splits}
    head = fit_head(kind, features["train"], targets["train"], task=manifest.task, outputs=manifest.num_outputs,
                    seed=config.train.seed, rounds=config.model.gbm_rounds or GBM_ROUNDS)
    if head.weight is not None:
        write_head(model, head)
        layer = last_linear(model).cpu()
        with torch.no_grad():  # the network's own last layer on the features: what predict will compute
            raw = {s: layer(torch.from_numpy(features[s])).double().numpy() for s in splits}
        outputs = {s: _softmax(r) if manifest.task == "classify" else r for s, r in raw.items()}
        model.to(runtime.device)
    else:
        outputs = {s: head.predict(features[s]) for s in splits}
    scores = {s: score_outputs(outputs[s], targets[s], manifest.task) for s in splits}
    for s in splits[1:]:
        runs.save_predictions(run_dir / f"predictions_{s}.parquet",
                              predictions_table(sets[s].paths, outputs[s], targets[s], manifest))
    if head.weight is None:  # trees: keep their training data, refitted at load (honed never pickles)
        from honed.models.heads.gbm import FEATURES_FILE, save_gbm_data

        save_gbm_data(run_dir / FEATURES_FILE, train_features=features["train"], train_targets=targets["train"],
                      val_features=features["val"], val_outputs=outputs["val"], task=manifest.task,
                      outputs=manifest.num_outputs, seed=config.train.seed, rounds=head.details["rounds"],
                      leaf=head.details["min_samples_leaf"])
    save_weights(run_dir / "best.safetensors", model)  # a gbm run's head layer is untouched: only its input counts
    save_weights(run_dir / "last.safetensors", model)
    seconds = time.perf_counter() - started
    row = {"epoch": 1, "train_loss": scores["train"]["loss"],
           **{k if k != "loss" else "val_loss": v for k, v in scores["val"].items()}, "lr": 0.0, "seconds": seconds}
    history = pd.DataFrame([row])
    runs.save_history(run_dir, history, metric)
    write_json(run_dir / PROBE_FILE, {
        "head_model": kind, "features": int(features["train"].shape[1]), "details": head.details,
        "weights_written": True, "head": "linear" if head.weight is not None else "gbm-refit",
        "train_" + metric: scores["train"].get(metric),
        "extract_seconds": extracted - started, "fit_seconds": time.perf_counter() - extracted,
        "note": "" if head.weight is not None else "a gbm head is not a linear layer and honed never pickles: "
                "its training features are kept and the trees refitted when the run is loaded"})
    metrics = {k: v for k, v in row.items() if k not in ("epoch", "lr", "seconds")}
    metrics.update({f"test_{k}": v for k, v in scores.get("test", {}).items()})
    runs.record(workspace, run_dir, config, manifest, metric, metrics, status="done", duration_s=seconds)
    reporter.epoch_finished(row)
    digest = _agree_across_ranks(model, runtime, run_dir)
    return TrainResult(config.name, run_dir, metric, float(row[metric]), metrics, 1, history, digest)


def refuse_without_weights(run_dir: Path, action: str) -> None:
    """HonedError when ``run_dir`` is a gbm probe run from before gbm heads were refitted at load (no weights,
    no features file): it cannot be ``action``."""
    path = Path(run_dir) / PROBE_FILE
    if path.is_file():
        facts = json.loads(path.read_text())
        if not facts.get("weights_written", True):
            raise HonedError(f"run {Path(run_dir).name!r} cannot be {action}: {facts.get('note', '')}; "
                             "train it again (this honed keeps what a gbm head needs to predict)")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
