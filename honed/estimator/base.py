"""``ImageEstimator``: what ``ImageClassifier`` and ``ImageRegressor`` share, in scikit-learn's shape.

The constructor stores its keyword arguments unchanged (the CLI's option names, ``honed.config.OPTION_FIELDS``);
``fit`` turns them into a ``RunConfig`` and trains one run as ``honed train`` does; the learned state ends in
``_``: the run's folder (``run_dir_``), its settled config (``config_``), its validation metrics
(``metrics_``) and the loaded model (``predictor_``). A fitted estimator is a run folder or a bundle on disk,
so ``load`` gives it back, and ``clone`` gives an unfitted one with the same settings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from honed.advise.auto import train
from honed.artifacts.run_folder import CONFIG_FILE
from honed.config import RunConfig, config_options, with_options
from honed.errors import HonedError
from honed.estimator.inputs import (Columns, as_list, manifest_of, prediction_items, row_images, scored_rows,
                                    training_data)
from honed.export.bundle import export_bundle
from honed.predict import Predictor, load as load_predictor
from honed.progress import Reporter
from honed.tasks import Task, get_task
from honed.tracking.ledger import Ledger
from honed.tracking.ledger_db import has_ledger
from honed.training.callbacks import Callback, EpochEnd, RunInfo

LEARNED = ("config_", "predictor_")  # set by fit and load: what check_is_fitted looks for


class ImageEstimator(BaseEstimator):
    """Shared by the classifier and the regressor; subclasses set ``_task`` and list their parameters."""

    _task = "classify"

    def _store(self, params: dict[str, Any]) -> None:
        """scikit-learn's contract: every argument kept as given, under its own name; checked in ``fit``."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    @property
    def task_(self) -> Task:
        return get_task(self._task)

    def _columns(self) -> Columns:
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        """The parameters as config options (``target`` as a list; the task from the class)."""
        options = {**self.get_params(), "task": self._task}
        if "target" in options:
            options["target"] = as_list(options["target"])
        return options

    def fit(self, data: Any, val: Any = None, time_limit: float | None = None, *,
            reporter: Reporter | None = None) -> "ImageEstimator":
        """Train one run on ``data`` (a folder, a CSV/Parquet path, a pandas DataFrame of image paths or
        images, or a torch Dataset), validated on ``val`` when given, else on the data's own val split or a
        stratified ``val_fraction``. ``time_limit`` (seconds, counted from this call): no epoch starts that
        the slowest epoch so far says would end past it; the first always runs. Returns the estimator."""
        started = time.perf_counter()
        if time_limit is not None and not time_limit > 0:
            raise HonedError(f"time_limit must be a positive number of seconds, not {time_limit}")
        source, manifest = training_data(data, val, self._columns())
        config = RunConfig.from_dict(with_options({}, {**self._options(), "data": source}))
        callbacks = [TimeLimit(started + time_limit)] if time_limit is not None else []
        result = train(config, manifest=manifest, reporter=reporter, callbacks=callbacks)
        self._fitted(load_predictor(result.run_dir, device=self.device), run_dir=result.run_dir,
                     metrics=dict(result.metrics))
        return self

    def _fitted(self, predictor: Predictor, *, run_dir: Path | None, metrics: dict, bundle: Path | None = None):
        if predictor.task != self._task:
            raise HonedError(f"this model is a {predictor.task_type.model_word}: load it with "
                             f"{'ImageClassifier' if predictor.task_type.is_classification else 'ImageRegressor'}")
        self.predictor_ = predictor
        self.config_ = predictor.config
        self.run_dir_ = Path(run_dir) if run_dir else None
        self.bundle_ = Path(bundle) if bundle else None
        self.metrics_ = metrics
        self._learned(predictor)
        return self

    def _learned(self, predictor: Predictor) -> None:
        """Subclasses: what they learn beyond the model (class names, target columns)."""

    def _outputs(self, items: list) -> np.ndarray:
        """Probabilities [N, classes] or values [N, targets]; an input that cannot be decoded is an error."""
        check_is_fitted(self, LEARNED)
        outputs, errors = self.predictor_.predict_outputs(items, batch_size=self.batch_size, workers=self.workers)
        failed = [(item, reason) for item, reason in zip(items, errors) if reason]
        if failed:
            item, reason = failed[0]
            raise HonedError(f"{len(failed)} input(s) cannot be decoded (e.g. {item}: {reason}): remove them, or "
                             "use honed.load(path).predict, whose table lists them")
        return outputs

    def _predict_outputs(self, data: Any) -> np.ndarray:
        return self._outputs(prediction_items(data, path_column=self.path_column))

    def evaluate(self, data: Any) -> dict[str, float]:
        """The task's metrics on ``data`` (any kind ``fit`` takes, with its labels or targets): its test split
        when it has one, else its validation split, else all of it."""
        check_is_fitted(self, LEARNED)
        manifest = manifest_of(data, self._columns(), scoring=True)
        rows = scored_rows(manifest)
        outputs = self._outputs(row_images(manifest, rows))
        scores = self.task_.score(outputs, self._targets(rows))
        return {metric: scores[metric] for metric in self.task_.metrics}

    def _targets(self, rows) -> np.ndarray:
        raise NotImplementedError

    def export(self, path: str | Path, format: str | list[str] = "bundle", **kwargs) -> Path:
        """The fitted run as a bundle at ``path`` (``format`` may add "onnx" or "torchscript", each checked
        for parity); other keywords as ``honed.export.export_bundle`` (``archive``, ``tta``, ``fuse``)."""
        check_is_fitted(self, LEARNED)
        if self.run_dir_ is None:
            raise HonedError(f"this estimator was loaded from the bundle {self.bundle_}: it is exported already")
        formats = ["bundle", *(f for f in as_list(format) if f != "bundle")]
        return Path(export_bundle(self.run_dir_, path, formats=formats, **kwargs).path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> "ImageEstimator":
        """A fitted estimator from a run folder or a bundle (folder or .zip), its parameters those of the run."""
        return cls.from_predictor(load_predictor(path, device=device), path, device=device)

    @classmethod
    def from_predictor(cls, predictor: Predictor, path: str | Path, *, device: str = "auto") -> "ImageEstimator":
        """The estimator of a model loaded from ``path`` (a run folder or a bundle)."""
        options = config_options(predictor.config)
        params = {name: options[name] for name in cls._get_param_names() if name in options}
        params["name"] = ""  # so that a refit of it (or of its clone) is a new run, named afresh
        if "target" in params:
            params["target"] = list(predictor.target_columns)
        is_run = (Path(path) / CONFIG_FILE).exists()
        return cls(**{**params, "device": device})._fitted(
            predictor, run_dir=Path(path) if is_run else None, metrics=_run_metrics(Path(path)) if is_run else {},
            bundle=None if is_run else Path(path))


class TimeLimit(Callback):
    """Stops a run before an epoch that would end past ``deadline`` (a ``time.perf_counter`` value), judged by
    the slowest epoch so far: the honest estimate there is before the next one runs."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def stop_reason(self, run: RunInfo, end: EpochEnd) -> str:
        slowest = max(row.get("seconds", 0.0) for row in end.history)
        if time.perf_counter() + slowest > self.deadline:
            return "time_limit reached (another epoch would end past it)"
        return ""


def _run_metrics(run_dir: Path) -> dict:
    """The run's final metrics from the ledger of the workspace it lies in, when there is one."""
    if not has_ledger(run_dir.parent):
        return {}
    with Ledger(run_dir.parent) as ledger:
        record = ledger.get(run_dir.name)
    return dict(record.metrics or {}) if record is not None else {}
