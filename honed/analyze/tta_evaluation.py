"""``evaluate_tta``: a run's scores with and without test-time augmentation, and what TTA costs per image.

Each split is decoded once; every batch is predicted plainly and through every view, each timed on the
device. Learned view weights are fitted on the validation split: the validation score is cross-fitted
(each fold weighted by weights fitted on the other folds), the test score uses weights fitted on all of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from honed.data.manifest import Manifest
from honed.data.preprocess import to_unit_float
from honed.errors import HonedError
from honed.combine.scoring import score
from honed.tta.setting import TTASetting, aggregate_outputs
from honed.artifacts.run_folder import CONFIG_FILE, MANIFEST_FILE
from honed.tasks import get_task


@dataclass
class TTAEvaluation:
    """Scores per split with and without TTA; ``rows`` is what the CLI prints."""

    run: str
    metric: str
    setting: TTASetting  # for "learned": the weights fitted on all validation rows
    task: str = "classify"
    rows: list[dict] = field(default_factory=list)  # split, tta ("none" | described), metrics, ms_per_image
    outputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)  # split ->
    # (targets, plain outputs, TTA outputs) per image: what a paired comparison of the two needs

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


@dataclass
class _SplitRun:
    targets: np.ndarray
    plain: np.ndarray  # [N, C] probabilities or values
    views: np.ndarray  # [V, N, C] raw outputs
    plain_s: float
    views_s: float


def evaluate_tta(run: str | Path, *, views: str | Sequence[str] = "flip", aggregate: str = "mean",
                 splits: Sequence[str] = ("val", "test"), batch_size: int = 64, workers: int = -1,
                 device: str = "auto", folds: int = 5, seed: int = 0,
                 progress: Callable[[int], None] | None = None) -> TTAEvaluation:
    """Score the run at ``run`` on its own splits plainly and with ``views`` aggregated by ``aggregate``;
    ``progress`` gets the images done, batch by batch."""
    from honed.combine.simplex import cross_fit, fit_simplex_weights
    from honed.predict import load

    run_dir = Path(run)
    predictor = load(run_dir, device=device, tta="none")
    if getattr(predictor, "members", None) is not None:
        raise HonedError("TTA is evaluated per model: evaluate the ensemble's members")
    frame, manifest = _split_frames(run_dir, predictor)
    metric = _metric(run_dir)
    names = TTASetting.parse(views).views
    results = {s: _predict_split(predictor, frame[frame["split"] == s], manifest, names, batch_size, workers,
                                 progress) for s in splits if (frame["split"] == s).any()}
    if "val" not in results:
        raise HonedError(f"run {run_dir.name} has no validation images to evaluate")
    weights = None
    if aggregate == "learned":
        probs = {s: _probabilities(r.views, predictor.task) for s, r in results.items()}
        weights = tuple(float(w) for w in fit_simplex_weights(probs["val"], results["val"].targets, predictor.task))
    setting = TTASetting(names, aggregate, weights)
    evaluation = TTAEvaluation(run_dir.name, metric, setting, predictor.task)
    for split, result in results.items():
        if aggregate == "learned" and split == "val":
            tta_out = cross_fit(probs["val"], result.targets, predictor.task, folds=folds, seed=seed).outputs
        else:
            tta_out = aggregate_outputs(torch.from_numpy(result.views), predictor.task, aggregate, weights).numpy()
        n = len(result.targets)
        evaluation.outputs[split] = (result.targets, result.plain, tta_out)
        for label, outputs, seconds in (("none", result.plain, result.plain_s),
                                        (setting.describe(), tta_out, result.views_s)):
            scores = score(outputs, result.targets, predictor.task)
            evaluation.rows.append({"split": split, "tta": label, **scores, "ms_per_image": 1000 * seconds / n,
                                    "images": n})
    return evaluation


def _split_frames(run_dir: Path, predictor) -> tuple[pd.DataFrame, Manifest]:
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        raise HonedError(f"{run_dir} has no manifest.parquet: evaluate a training run of this workspace")
    frame = pd.read_parquet(path)
    manifest = Manifest(frame=frame, task=predictor.task, classes=predictor.classes,
                        target_columns=predictor.target_columns)
    missing = [p for p in frame["path"] if not Path(p).is_file()][:1]
    if missing:
        raise HonedError(f"cannot read {missing[0]}: evaluation reads the run's image files (runs on in-memory "
                         "datasets are evaluated with TTAClassifier on the images themselves)")
    return frame, manifest


def _metric(run_dir: Path) -> str:
    from honed.config import RunConfig

    return RunConfig.from_yaml(run_dir / CONFIG_FILE).main_metric()


def _predict_split(predictor, frame: pd.DataFrame, manifest: Manifest, names: tuple[str, ...], batch_size: int,
                   workers: int, progress: Callable[[int], None] | None = None) -> _SplitRun:
    setting = TTASetting(names)
    plain, views, plain_s, views_s = [], [], 0.0, 0.0
    with torch.no_grad():
        for batch, _ in predictor.batches(frame["path"].tolist(), batch_size=batch_size, workers=workers):
            x = to_unit_float(batch.to(predictor.device))
            start = time.perf_counter()
            out = predictor.logits(x)
            plain.append(get_task(predictor.task).outputs(out).cpu().numpy())
            middle = time.perf_counter()
            views.append(setting.view_outputs(x, predictor.logits, identity=out).cpu().numpy())
            # the identity view reuses the plain pass here; deployed TTA runs it, so its cost counts
            reused = (middle - start) * names.count("identity")
            plain_s, views_s = plain_s + middle - start, views_s + time.perf_counter() - middle + reused
            if progress is not None:
                progress(len(batch))
    return _SplitRun(manifest.targets(frame.reset_index(drop=True)), np.concatenate(plain),
                     np.concatenate(views, axis=1), plain_s, views_s)


def _probabilities(raw: np.ndarray, task: str) -> np.ndarray:
    return get_task(task).outputs(torch.from_numpy(raw), dim=2).numpy()
