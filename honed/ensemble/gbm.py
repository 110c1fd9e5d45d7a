"""Gradient boosting on frozen features: a backbone's pooled output (no training of the network), fed to
scikit-learn's HistGradientBoostingClassifier (one HistGradientBoostingRegressor per target for regression).

The backbone is the config's model with its starting weights (``pretrained`` or ``weights``), its head
removed. The run records scores and predictions but cannot predict new images later: honed never pickles,
and scikit-learn models have no other file format. Refitting is cheap: the features are the cost.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from honed.config import RunConfig
from honed.data.dataset import ImageDataset
from honed.data.loader import make_loader
from honed.data.manifest import Manifest
from honed.data.pipeline import BatchPipeline
from honed.ensemble.resample import ensemble_name, prepared_manifest
from honed.ensemble.store import EnsembleResult, SplitOutputs, claim_folder, save_ensemble
from honed.models.transfer import eval_mode
from honed.ensemble.scoring import score
from honed.training.reporter import LogReporter, Reporter

LEARNING_RATE = 0.1  # scikit-learn's default; more rounds rather than a larger step


def boost_gbm(config: RunConfig, *, rounds: int = 100, manifest: Manifest | None = None,
              reporter: Reporter | None = None, workers: int = 0) -> EnsembleResult:
    """Fit gradient-boosted trees (``rounds`` boosting iterations) on frozen pooled features; save the run."""
    from honed.models.factory import build_model

    started = time.perf_counter()
    reporter = reporter or LogReporter()
    name = ensemble_name(config, "gbm")
    prepared = prepared_manifest(config, manifest)
    torch.manual_seed(config.train.seed)
    backbone = _headless(build_model(config, prepared.num_outputs))
    splits = [s for s in ("train", "val", "test") if prepared.has_split(s)]
    features = {}
    for split in splits:
        reporter.message(f"frozen {config.model.name} features of the {split} images")
        features[split] = pooled_features(backbone, config, prepared, split, workers=workers)
    targets = {s: prepared.targets(prepared.split(s)) for s in splits}
    trees = _fit_trees(features["train"], targets["train"], prepared, rounds=rounds, seed=config.train.seed)
    outputs = {s: SplitOutputs(prepared.split(s)["path"].tolist(), targets[s], np.zeros((0,)),
                               trees(features[s])) for s in splits if s != "train"}
    metric = config.main_metric()
    metrics = score(outputs["val"].ensemble, targets["val"], prepared.task)
    if "test" in outputs:
        metrics.update({f"test_{k}": v for k, v in score(outputs["test"].ensemble, targets["test"],
                                                           prepared.task).items()})
    name, run_dir = claim_folder(Path(config.workspace), name, "gbm")
    details = {"backbone": config.model.name, "pretrained": config.model.pretrained, "weights": config.model.weights,
               "features": int(features["train"].shape[1]), "rounds": rounds, "learning_rate": LEARNING_RATE}
    save_ensemble(run_dir, kind="gbm", members=[], rule=None, task=prepared.task, classes=prepared.classes,
                  target_columns=prepared.target_columns, metric=metric, val=outputs["val"], test=outputs.get("test"),
                  diversity=None, metrics=metrics, base_config=config, parent=config.parent or None,
                  change=f"gradient boosting ({rounds} rounds) on frozen {config.model.name} features",
                  details=details, manifest_frame=prepared.frame[[c for c in prepared.frame.columns
                                                                  if c not in ("origin", "index")]],
                  fingerprint=prepared.fingerprint(), duration_s=time.perf_counter() - started)
    return EnsembleResult(name, run_dir, "gbm", None, metric, float(metrics[metric]), metrics, [], {}, None, details)


def _fit_trees(x: np.ndarray, y: np.ndarray, manifest: Manifest, *, rounds: int, seed: int):
    """Fitted trees as a function: features -> probabilities over every class, or values per target."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    params = dict(max_iter=rounds, learning_rate=LEARNING_RATE, early_stopping=False, random_state=seed,
                  min_samples_leaf=max(1, min(20, len(x) // 10)))  # sklearn's 20, fewer on tiny data
    if manifest.task == "classify":
        model = HistGradientBoostingClassifier(**params).fit(x, y)
        return lambda features: _full_proba(model, features, manifest.num_outputs)
    models = [HistGradientBoostingRegressor(**params).fit(x, y[:, t]) for t in range(manifest.num_outputs)]
    return lambda features: np.stack([m.predict(features) for m in models], axis=1)


def _headless(model: torch.nn.Module) -> torch.nn.Module:
    """The model returning its pooled features: timm's ``reset_classifier(0)``, or the head replaced by Identity."""
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(0)
    else:
        from honed.models.transfer import head_module

        head = head_module(model)
        for name, module in model.named_children():
            if module is head:
                setattr(model, name, torch.nn.Identity())
    return eval_mode(model)


@torch.no_grad()
def pooled_features(model: torch.nn.Module, config: RunConfig, manifest: Manifest, split: str, *,
                    workers: int = 0, batch_size: int = 128) -> np.ndarray:
    """``[N, F]`` features of one split, with the run's deterministic evaluation preprocessing."""
    frame = manifest.split(split)
    dataset = ImageDataset(frame, manifest.targets(frame), config.preprocess.image_size, datasets=manifest.datasets)
    loader = make_loader(dataset, batch_size=batch_size, train=False, workers=workers)
    pipeline = BatchPipeline(config.preprocess.mean, config.preprocess.std)
    device = next(model.parameters()).device
    return np.concatenate([model(pipeline.eval_batch(images.to(device))).flatten(1).float().cpu().numpy()
                           for images, _ in loader])


def _full_proba(model, features: np.ndarray, classes: int) -> np.ndarray:
    """Probabilities over every class, including those absent from the training rows (probability 0)."""
    out = np.zeros((len(features), classes))
    out[:, model.classes_.astype(int)] = model.predict_proba(features)
    return out
