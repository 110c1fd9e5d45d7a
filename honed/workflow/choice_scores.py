"""How a strategy candidate is scored on cached frozen features (``probe``, ``head``): the features of every
train + val image extracted once (``honed.models.features``, cached on disk), then per fold a head fitted on
the others. A ``head`` run trains the new last layer of a frozen, eval-mode backbone; without augmentation
(the workflow's baseline has none) that is exactly a linear layer trained on these features with the run's
optimizer, learning-rate schedule, batch size and epochs, which is what is done here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from honed.config import RunConfig
from honed.data.cache import cache_root
from honed.data.dataset import split_dataset
from honed.data.manifest import Manifest
from honed.models.factory import build_model, with_preprocess_defaults
from honed.models.features import extract_features
from honed.models.heads import head_kind
from honed.optim import LrSchedule, build_optimizer, schedule_cycles, set_lr
from honed.progress import Reporter
from honed.tasks import get_task
from honed.training.probe import fit_head

BOOTSTRAP = 200  # resamples of the holdout for its standard error


@dataclass
class Candidate:
    """One strategy's scores on the data: one per fold (or one on the holdout, with its standard error)."""

    strategy: str
    scores: list[float]
    how: str = ""  # how it was measured, in words
    holdout_se: float | None = None  # for a single holdout score: its standard error
    seconds: float = 0.0
    # bootstrap standard error of the score on all out-of-fold predictions pooled: a floor for the spread of the
    # fold scores, which can come out near zero by chance (seen: 5 folds of 49 photos, each with exactly 2 errors)
    pooled_se: float = 0.0

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    @property
    def se(self) -> float:
        """Standard error of the mean: std / sqrt(k) over folds, at least the pooled predictions' own; or the
        holdout's own."""
        if len(self.scores) > 1:
            return max(self.std / math.sqrt(len(self.scores)), self.pooled_se)
        return self.holdout_se or 0.0




def folds_of(folds: int) -> str:
    return f"{folds}-fold CV" if folds > 1 else "the validation holdout"


def feature_scores(base: RunConfig, manifest: Manifest, names: list[str], *, folds: int, metric: str,
                   reporter: Reporter | None = None) -> list[Candidate]:
    """One Candidate per name in ``names`` (``probe``, ``head``), scored on the same folds of cached features."""
    if not names:
        return []
    import time

    started = time.perf_counter()
    frame = manifest.frame
    pool = frame[frame["split"].isin(["train", "val"])].copy()
    holdout = pool["split"].to_numpy() == "val"
    pool["split"] = "train"
    pooled = Manifest(frame=pool.reset_index(drop=True), task=manifest.task, classes=manifest.classes,
                      target_columns=manifest.target_columns, name=manifest.name, datasets=manifest.datasets)
    torch.manual_seed(base.train.seed)  # the random parts of the network (a new head, random weights) as a run
    model = build_model(base.model, manifest.num_outputs)  # with this seed draws them: the choice reproduces
    pre = with_preprocess_defaults(base.preprocess, model)
    dataset = split_dataset(pooled, "train", pre.image_size)
    features = extract_features(model, dataset, mean=pre.mean, std=pre.std, device=_device(base.train.device),
                                batch_size=base.train.batch_size * 2, workers=max(base.train.workers, 0),
                                reporter=reporter, label="features for the strategy choice", cache_dir=cache_root())
    targets = np.asarray(dataset.targets)
    splits = _splits(targets, manifest.task, folds, holdout, base.train.seed)
    extract_s = time.perf_counter() - started
    out = []
    for name in names:
        begun = time.perf_counter()
        scores, outputs = [], []
        for train_idx, val_idx in splits:
            outputs.append(_fit_predict(name, base, manifest, features[train_idx], targets[train_idx],
                                        features[val_idx]))
            scores.append(get_task(manifest.task).score(outputs[-1], targets[val_idx])[metric])
        pooled_se = _bootstrap_se(np.concatenate(outputs), np.concatenate([targets[v] for _, v in splits]),
                                  manifest.task, metric, base.train.seed)
        how = f"{folds_of(folds)} on cached frozen features"
        out.append(Candidate(name, [float(s) for s in scores], how, pooled_se if folds == 1 else None,
                             time.perf_counter() - begun + extract_s / len(names), pooled_se=pooled_se))
    return out


def _device(asked: str) -> str:
    if asked in ("auto", ""):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return asked


def _splits(targets: np.ndarray, task: str, folds: int, holdout: np.ndarray, seed: int) -> list:
    """(train, validation) index pairs: stratified k folds, or the workflow's own holdout."""
    from sklearn.model_selection import KFold, StratifiedKFold

    index = np.arange(len(targets))
    if folds == 1:
        return [(index[~holdout], index[holdout])]
    if get_task(task).is_classification and np.unique(targets, return_counts=True)[1].min() >= folds:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(index, targets))
    return list(KFold(folds, shuffle=True, random_state=seed).split(index))


def _fit_predict(name: str, base: RunConfig, manifest: Manifest, x: np.ndarray, y: np.ndarray,
                 x_val: np.ndarray) -> np.ndarray:
    if name == "probe":
        kind = head_kind(manifest.task, base.model.head_model)
        head = fit_head(kind, x, y, task=manifest.task, outputs=manifest.num_outputs, seed=base.train.seed)
        return head.predict(x_val)
    return _train_linear(base, manifest.task, manifest.num_outputs, x, y, x_val)


def _train_linear(base: RunConfig, task: str, outputs: int, x: np.ndarray, y: np.ndarray,
                  x_val: np.ndarray) -> np.ndarray:
    """The ``head`` strategy on features: a new linear layer, the run's optimizer and schedule, its epochs."""
    t = base.train
    generator = torch.Generator().manual_seed(t.seed)
    layer = torch.nn.Linear(x.shape[1], outputs)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimizer = build_optimizer([{"params": list(layer.parameters()), "lr_scale": 1.0}], name=t.optimizer, lr=t.lr,
                                weight_decay=t.weight_decay)
    steps = max(math.ceil(len(x) / t.batch_size), 1)
    schedule = LrSchedule(t.lr, steps * t.epochs, int(t.warmup_epochs * steps), t.schedule,
                          schedule_cycles(t.epochs, t.cycles))
    features, targets = torch.from_numpy(x), torch.from_numpy(y)
    step = 0
    for _ in range(t.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), t.batch_size):
            batch = order[start:start + t.batch_size]
            set_lr(optimizer, schedule.lr_at(step))
            loss = get_task(task).loss(layer(features[batch]), targets[batch], label_smoothing=t.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    with torch.no_grad():
        raw = layer(torch.from_numpy(x_val)).double()
    return get_task(task).outputs(raw).numpy()


def pooled_se(run_dirs: list[Path], *, metric: str, seed: int) -> float:
    """The bootstrap standard error of the runs' saved validation predictions pooled: for k-fold runs, every
    image once (0 when a run has none to read)."""
    from honed.artifacts.predictions import validation_outputs

    try:
        parts = [validation_outputs(run_dir) for run_dir in run_dirs]
    except (OSError, KeyError, ValueError):
        return 0.0
    if not parts or len({part.task for part in parts}) != 1:
        return 0.0
    return _bootstrap_se(np.concatenate([part.outputs for part in parts]),
                         np.concatenate([part.targets for part in parts]), parts[0].task, metric, seed)


def _bootstrap_se(outputs: np.ndarray, targets: np.ndarray, task: str, metric: str, seed: int) -> float:
    """Standard error of the score on these predictions: its spread over resamples of them."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(BOOTSTRAP):
        take = rng.integers(0, len(targets), len(targets))
        scores.append(get_task(task).score(outputs[take], targets[take])[metric])
    return float(np.std(scores))
