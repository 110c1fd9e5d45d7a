"""Training images whose label is probably wrong, ranked by ``cleanlab.filter.find_label_issues``.

cleanlab needs out-of-sample class probabilities for every image. Two sources give them:

- ``probabilities_from_features``: the frozen pretrained features the probe and the advisor use (cached by
  ``honed.models.features``), and a linear head (standardized logistic regression) scored by scikit-learn's
  ``cross_val_predict``: seconds once the features are cached, no training run needed;
- ``probabilities_from_folds``: a k-fold run's own predictions (``honed train --folds K``): each fold's
  validation predictions are out of sample for its images, and together they cover the pooled data.

It lives in ``honed.analyze`` rather than ``honed.data`` because it needs a backbone (``honed.models``), which
the data layer may not import. Nothing here relabels or drops an image: ``exclude_file`` writes a list that a
run leaves out only when asked (``--exclude-label-issues``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from honed.data.cache import cache_root
from honed.data.dataset import ImageDataset
from honed.data.label_issues import CSV_COLUMNS
from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.progress import Reporter

DEFAULT_MODEL = "tf_efficientnet_lite0"  # pip-shipped ImageNet weights: works offline
CV_FOLDS = 5  # out-of-sample folds for the linear head (cleanlab's own default)
LOGREG_C = 0.1  # inverse L2 strength on standardized features: 1280 features, a few hundred images per class
MIN_PER_CLASS = 2  # fewer training images of a class than this cannot be cross-validated


@dataclass
class OutOfSample:
    """Out-of-sample probabilities ``probs [N, C]`` for ``paths`` whose given label index is ``labels``."""

    paths: list[str]
    labels: np.ndarray  # int, index into classes
    probs: np.ndarray  # float, rows sum to 1
    classes: list[str]
    source: str  # "features: MODEL at SIZE px, C-fold logistic regression" or "folds: RUN"


@dataclass
class LabelIssues:
    """The flagged images, most likely wrong first; ``score`` is cleanlab's label quality (self-confidence:
    the probability of the given label), low = doubtful."""

    rows: list[dict]  # path, given, suggested, score, rank (1 = most likely wrong)
    images: int  # images checked
    source: str
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def paths(self, n: int | None = None) -> list[str]:
        """The paths of the ``n`` most likely wrong (all when None)."""
        return [r["path"] for r in self.rows[:n]]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(CSV_COLUMNS))

    def to_dict(self) -> dict:
        """JSON-ready: ``label_issues`` is the ranked list of rows (path, given, suggested, score)."""
        return {"label_issues": [{k: r[k] for k in ("path", "given", "suggested", "score")} for r in self.rows],
                "label_issue_summary": {"found": len(self.rows), "images": self.images, "source": self.source,
                                        "seconds": self.seconds}}


def rank_label_issues(oos: OutOfSample) -> LabelIssues:
    """cleanlab's flagged set (``find_label_issues``, default prune-by-noise-rate filter), ranked by
    self-confidence, with the suggested label (the most probable class)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    started = time.perf_counter()
    if len(oos.paths) == 0:
        return LabelIssues([], 0, oos.source, classes=oos.classes)
    present = np.unique(oos.labels)
    if len(present) < 2:
        raise HonedError("label issues need at least two classes in the training images")
    with warnings.catch_warnings():  # "too few examples in class k": a small set is judged as well as it can be
        warnings.simplefilter("ignore", UserWarning)
        ranked = find_label_issues(oos.labels, oos.probs, return_indices_ranked_by="self_confidence")
        scores = get_label_quality_scores(oos.labels, oos.probs, method="self_confidence")
    suggested = oos.probs.argmax(axis=1)
    rows = [{"path": oos.paths[i], "given": oos.classes[oos.labels[i]], "suggested": oos.classes[suggested[i]],
             "score": round(float(scores[i]), 6), "rank": rank}
            for rank, i in enumerate(np.asarray(ranked, dtype=int).tolist(), start=1)]
    return LabelIssues(rows, len(oos.paths), oos.source, time.perf_counter() - started, oos.classes)


def probabilities_from_features(manifest: Manifest, *, model: str = DEFAULT_MODEL, image_size: int = 0,
                                pretrained: bool = True, weights: str = "", split: str = "train",
                                skip: set[str] | frozenset = frozenset(), seed: int = 0, workers: int = 0,
                                batch_size: int = 64, reporter: Reporter | None = None) -> OutOfSample:
    """Frozen ``model`` features of ``split``'s images (``skip``: paths left out, e.g. undecodable files) and
    out-of-fold probabilities of a logistic regression on them."""
    from honed.models.backbones import create_backbone_with_pretrained, data_config_for
    from honed.models.features import extract_features
    import torch

    frame = _labelled(manifest, split, skip)
    targets = manifest.targets(frame)
    torch.manual_seed(seed)
    network = create_backbone_with_pretrained(model, max(len(manifest.classes), 1), pretrained=pretrained,
                                              weights=weights or None)
    defaults = data_config_for(network)
    size = image_size or int(defaults["input_size"][-1])
    dataset = ImageDataset(frame, targets, size, datasets=manifest.datasets)
    features = extract_features(network, dataset, mean=list(defaults["mean"]), std=list(defaults["std"]),
                                batch_size=batch_size, workers=workers, reporter=reporter,
                                label="label issues: features", cache_dir=cache_root())
    probs, folds = cross_validated_probabilities(features, targets, len(manifest.classes), seed=seed)
    return OutOfSample(frame["path"].astype(str).tolist(), targets, probs, list(manifest.classes),
                       f"features: {model} at {size} px, {folds}-fold logistic regression")


def cross_validated_probabilities(features: np.ndarray, targets: np.ndarray, classes: int, *,
                                  seed: int = 0) -> tuple[np.ndarray, int]:
    """Out-of-fold ``predict_proba`` of standardized logistic regression, ``[N, classes]``, and the folds used."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from honed.models.heads.sklearn import sklearn_threads

    counts = np.bincount(targets, minlength=classes)
    smallest = int(counts[counts > 0].min())
    folds = min(CV_FOLDS, smallest)
    if folds < MIN_PER_CLASS:
        raise HonedError(f"a class has only {smallest} training image: label issues need at least "
                         f"{MIN_PER_CLASS} per class to cross-validate")
    head = make_pipeline(StandardScaler(), LogisticRegression(C=LOGREG_C, max_iter=1000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with sklearn_threads():
        partial = cross_val_predict(head, features, targets, cv=cv, method="predict_proba")
    probs = np.zeros((len(targets), classes))
    probs[:, np.flatnonzero(counts)] = partial  # classes absent from training keep probability 0
    return probs, folds


def probabilities_from_folds(workspace: str | Path, run: str) -> OutOfSample:
    """The validation predictions of the folds of k-fold run ``run`` (runs ``RUN-fold0`` ...), joined."""
    from honed.artifacts.run_folder import RunFolder

    workspace = Path(workspace)
    parts, classes, k = [], None, 0
    while True:
        try:
            folder = RunFolder.find(workspace, f"{run}-fold{k}")
        except HonedError:
            break
        predictions = folder.predictions("val")
        labels = folder.labels()
        if predictions is None or not labels.task.startswith("classif"):
            raise HonedError(f"fold run {folder.name!r} has no classification predictions_val.parquet: "
                             "train it again with --folds")
        classes = classes or labels.classes
        parts.append(predictions)
        k += 1
    if k < 2:
        raise HonedError(f"no k-fold runs {run}-fold0, {run}-fold1 ... in {workspace}: "
                         f"train with `honed train --folds 5 --name {run}` first")
    frame = pd.concat(parts, ignore_index=True).drop_duplicates("path")
    index = {c: i for i, c in enumerate(classes)}
    probs = frame[[f"p:{c}" for c in classes]].to_numpy(dtype=float)
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return OutOfSample(frame["path"].astype(str).tolist(), frame["target"].map(index).to_numpy(dtype=int), probs,
                       list(classes), f"folds: {k} validation folds of {run}")


def find_label_issues(manifest: Manifest | str | Path, *, folds_run: str = "", workspace: str | Path = "honed-runs",
                      **feature_options) -> LabelIssues:
    """Label issues among ``manifest``'s training images (a Manifest, or a folder / CSV / Parquet source): from a
    k-fold run's predictions when ``folds_run`` is given, else from frozen features (``feature_options`` go to
    ``probabilities_from_features``: model, image_size, pretrained, skip, seed, ...)."""
    started = time.perf_counter()
    if not isinstance(manifest, Manifest):
        from honed.data.sources import load_source

        manifest = load_source(str(manifest))
    if folds_run:
        oos = probabilities_from_folds(workspace, folds_run)
    else:
        oos = probabilities_from_features(manifest, **feature_options)
    issues = rank_label_issues(oos)
    issues.seconds = time.perf_counter() - started
    return issues


def write_csv(issues: LabelIssues, path: str | Path) -> Path:
    """The ranked rows as CSV: path, given, suggested, score, rank."""
    from honed.tracking.atomic import write_text

    write_text(Path(path), issues.frame().to_csv(index=False))
    return Path(path)


def _labelled(manifest: Manifest, split: str, skip) -> pd.DataFrame:
    if not manifest.task_type.is_classification:
        raise HonedError("label issues are for classification data: a regression target has no class to doubt")
    frame = manifest.split(split)
    frame = frame[~frame["path"].astype(str).isin(set(skip))].reset_index(drop=True)
    if frame.empty:
        raise HonedError(f"no {split} images to check for label issues")
    return frame


def summary_dict(issues: LabelIssues) -> dict:
    """What a ledger note or a workflow step records: how many, from what."""
    return {k: v for k, v in asdict(issues).items() if k != "rows"} | {"found": len(issues)}


def exclusion(config, value: str, *, reporter: Reporter | None = None) -> tuple[str, str]:
    """What ``--exclude-label-issues VALUE`` means for a run of ``config`` (a RunConfig): a number N finds the
    label issues of its training images now (the run's own backbone when pretrained, else DEFAULT_MODEL) and
    lists the N likeliest in ``WORKSPACE/label-issues/``; anything else is a file of paths. Returns the list's
    path, for ``config.data.exclude``, and the change text the ledger records."""
    from honed.data.label_issues import read_exclusion
    from honed.data.scan import scan_images
    from honed.data.sources import load_source

    if not value.strip().isdigit():
        listed = read_exclusion(value)
        return str(Path(value).resolve()), f"without the {len(listed)} images listed in {Path(value).name}"
    n = int(value)
    data = config.data
    manifest = load_source(data.source, task=data.task, path_column=data.path_column, label_column=data.label_column,
                           target_columns=data.target_columns, torchvision_root=data.torchvision_root)
    train = manifest.split("train")["path"].astype(str).tolist()
    bad = {b.path for b in scan_images(train).bad}
    own = config.model.pretrained or config.model.weights
    issues = find_label_issues(manifest, model=config.model.name if own else DEFAULT_MODEL,
                               pretrained=bool(config.model.pretrained), weights=config.model.weights,
                               image_size=config.preprocess.image_size, skip=bad, seed=config.train.seed,
                               reporter=reporter)
    issues.rows = issues.rows[:n]
    target = Path(config.workspace) / "label-issues" / f"{config.name or 'run'}-top{n}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_csv(issues, target)
    return str(target.resolve()), (f"without the {len(issues)} likeliest label issues of {issues.images} training "
                                   f"images ({issues.source})")


def count_for_workflow(manifest: Manifest, base, folder: Path, *, reporter: Reporter | None = None) -> dict:
    """The workflow setup's check: label issues among the training images of ``manifest`` (already prepared:
    no undecodable files), from ``base``'s backbone when pretrained (its features are then cached for a probe)
    else DEFAULT_MODEL; the list goes to ``folder/label_issues.csv``. Nothing is relabelled or dropped. A check
    that cannot run (regression, a class with one image) says why instead."""
    if not manifest.task_type.is_classification:
        return {"skipped": "regression: no labels to doubt"}
    own = base.model.pretrained or base.model.weights
    try:
        issues = find_label_issues(manifest, model=base.model.name if own else DEFAULT_MODEL,
                                   pretrained=bool(base.model.pretrained), weights=base.model.weights,
                                   image_size=base.preprocess.image_size, seed=base.train.seed,
                                   batch_size=base.train.batch_size, reporter=reporter)
    except HonedError as error:
        return {"skipped": str(error)}
    write_csv(issues, Path(folder) / "label_issues.csv")
    if reporter is not None:
        reporter.message(f"label issues: {len(issues)} of {issues.images} training images look mislabelled "
                         f"(listed in {Path(folder) / 'label_issues.csv'}; --exclude-label-issues N trains without)")
    return {"found": len(issues), "images": issues.images, "source": issues.source,
            "seconds": round(issues.seconds, 1), "csv": str(Path(folder) / "label_issues.csv")}
