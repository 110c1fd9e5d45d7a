"""What the advisor measures: how much data there is per class, and how well the backbone's pretrained
features already separate it compared with the same network's random-weight features.

The similarity measure is a quick linear probe: a few images per class, their frozen features, logistic
regression (ridge for regression) scored by cross-validation; once with the pretrained weights, once with
random ones. Data the backbone "knows" (natural photos for ImageNet weights) gains a lot from pretraining;
data unlike it (synthetic shapes, medical scans, spectrograms) gains little. A distance between feature
statistics of the data and of the pretraining data (a Fréchet distance) needs statistics of the source's
features: honed does not ship ImageNet's, so for hub weights the probe gain answers alone; a backbone that
honed exported (``--backbone-only``) carries its source run's statistics, and then the distance is measured
too (``honed.models.feature_stats``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from honed.models.feature_stats import load_stats
from honed.data.dataset import ImageDataset
from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.data.cache import cache_root
from honed.models.backbones import create_backbone_with_pretrained, data_config_for
from honed.models.features import extract_features
from honed.models.heads.sklearn import C_GRID, CV_FOLDS, sklearn_threads
from honed.progress import Reporter
from honed.tasks import get_task

SAMPLE_IMAGES = 200  # images in the quick probe (at least MIN_PER_CLASS per class): a stable CV score, seconds
MIN_PER_CLASS = 20  # so 10 classes get 20 each, 2 classes 100 each
RANDOM_SEED_OFFSET = 7919  # the random-weight network's seed: the run's seed plus this, fixed


@dataclass
class Measurements:
    """The numbers the advice is based on; all from the training split."""

    task: str
    model: str
    image_size: int
    pretrained: bool  # pretrained or local weights were given
    train_images: int
    classes: int  # 0 for regression
    per_class_min: int  # training images of the rarest class (regression: all training images)
    per_class_median: float
    sample: int  # images in the quick probe
    probe_pretrained: float  # CV accuracy (classify) or R^2 (regress) on pretrained features
    probe_random: float  # the same on random-weight features of the same network
    chance: float  # accuracy of always predicting the commonest class (regression: 0, the R^2 of the mean)
    seconds: float
    # with --weights from `honed export --backbone-only`: the Fréchet distance of the sample's features to the
    # source run's training features, and the source's distance to itself at the same sample size
    source_distance: float | None = None
    source_baseline: float | None = None

    @property
    def gain(self) -> float:
        """What pretraining adds to a linear probe: pretrained minus random score."""
        return self.probe_pretrained - self.probe_random

    @property
    def source_ratio(self) -> float | None:
        """The distance to the source's data over the source's own; None without the source's statistics."""
        if self.source_distance is None or not self.source_baseline:
            return None
        return self.source_distance / self.source_baseline

    def to_dict(self) -> dict:
        return {**asdict(self), "gain": self.gain, "source_ratio": self.source_ratio}


def measure(manifest: Manifest, *, model: str, pretrained: bool, weights: str = "", image_size: int = 0,
            seed: int = 0, sample_per_class: int = 0, workers: int = 0,
            reporter: Reporter | None = None) -> Measurements:
    """Counts from ``manifest``'s train split, and the quick probe with pretrained and random features on a
    sample of ``sample_per_class`` images per class (0: SAMPLE_IMAGES in all, at least MIN_PER_CLASS each)."""
    started = time.perf_counter()
    train = manifest.split("train")
    if train.empty:
        raise HonedError("the data has no training images to measure")
    classification = manifest.task_type.is_classification  # counted per class; regression as one group
    counts = train["label"].value_counts() if classification else pd.Series([len(train)])
    sample = _sample(train, manifest.task, sample_per_class, seed)
    targets = manifest.targets(sample)
    outputs = max(manifest.num_outputs, 1)
    scores = {}
    distance: tuple[float | None, float | None] = (None, None)
    for kind in ("pretrained", "random") if (pretrained or weights) else ("random",):
        torch.manual_seed(seed + RANDOM_SEED_OFFSET)
        network = create_backbone_with_pretrained(model, outputs, pretrained=kind == "pretrained" and pretrained,
                                                  weights=(weights or None) if kind == "pretrained" else None)
        defaults = data_config_for(network)
        size = image_size or int(defaults["input_size"][-1])
        dataset = ImageDataset(sample, targets, size, datasets=manifest.datasets)
        features = extract_features(network, dataset, mean=list(defaults["mean"]), std=list(defaults["std"]),
                                    workers=workers, reporter=reporter, label=f"advisor: {kind} features",
                                    cache_dir=cache_root())
        with sklearn_threads():
            scores[kind] = _probe_score(features, targets, manifest.task, seed)
        if kind == "pretrained" and weights:
            distance = _source_distance(weights, features, model=model, image_size=size, reporter=reporter)
    commonest = counts.max() / counts.sum() if classification else 0.0
    return Measurements(
        task=manifest.task, model=model, image_size=size, pretrained=bool(pretrained or weights),
        train_images=len(train), classes=len(manifest.classes) if classification else 0,
        per_class_min=int(counts.min()), per_class_median=float(counts.median()), sample=len(sample),
        probe_pretrained=scores.get("pretrained", scores["random"]), probe_random=scores["random"],
        chance=float(commonest), seconds=time.perf_counter() - started, source_distance=distance[0],
        source_baseline=distance[1])


def _source_distance(weights: str, features: np.ndarray, *, model: str, image_size: int,
                     reporter: Reporter | None) -> tuple[float | None, float | None]:
    """(distance, the source's self-distance) when ``weights`` has feature statistics of this model and size."""
    stats = load_stats(weights)
    if stats is None:
        return None, None
    if (stats.model, stats.image_size) != (model, image_size):
        if reporter is not None:
            reporter.message(f"feature statistics of {weights} are for {stats.model} at {stats.image_size} px, "
                             f"not {model} at {image_size} px: no distance to the source measured")
        return None, None
    return stats.distance(features), stats.baseline


def _sample(train: pd.DataFrame, task: str, per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` rows of each class (regression: SAMPLE_IMAGES rows), seeded."""
    if not get_task(task).is_classification:
        return train.sample(min(SAMPLE_IMAGES, len(train)), random_state=seed).sort_index().reset_index(drop=True)
    groups = train.groupby("label")
    per_class = per_class or max(MIN_PER_CLASS, -(-SAMPLE_IMAGES // len(groups)))
    parts = [group.sample(min(per_class, len(group)), random_state=seed) for _, group in groups]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def _probe_score(features: np.ndarray, targets: np.ndarray, task: str, seed: int) -> float:
    """Cross-validated accuracy of logistic regression (best C of the grid), or R^2 of ridge, on standardized
    features; the chance level when there are too few images to cross-validate."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if get_task(task).is_classification:
        smallest = int(np.bincount(targets)[np.bincount(targets) > 0].min())
        folds = min(CV_FOLDS, smallest)
        if folds < 2 or len(np.unique(targets)) < 2:
            return float(np.bincount(targets).max() / len(targets))
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return max(float(cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)),
                                         features, targets, cv=cv).mean()) for c in C_GRID)
    if len(targets) < 2 * CV_FOLDS:
        return 0.0
    cv = KFold(CV_FOLDS, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=(1.0, 10.0, 100.0, 1000.0)))
    return float(cross_val_score(model, features, targets, cv=cv, scoring="r2").mean())
