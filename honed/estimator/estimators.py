"""``ImageClassifier`` and ``ImageRegressor``: one run of ``honed train`` as a scikit-learn estimator.

    clf = honed.ImageClassifier(epochs=10, image_size=128).fit("data/")
    clf.predict(["cat.jpg"])            # array of class names
    clf.predict_proba(frame)            # [N, classes] in the order of clf.classes_
    clf.evaluate("data/test")           # {"accuracy": ..., "macro_f1": ..., "log_loss": ...}

Keyword arguments are ``honed train``'s options in snake case, with its defaults (``honed.config``), except
three taken from ``honed workflow``: a pretrained ``tf_efficientnet_lite0`` (its weights come with pip) and
``strategy="auto"`` (the advisor picks the transfer strategy from the data).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin

from honed.errors import HonedError
from honed.estimator.base import ImageEstimator
from honed.estimator.inputs import Columns, as_list


class ImageClassifier(ClassifierMixin, ImageEstimator):
    """An image classifier; learned: ``classes_`` (sorted class names), ``run_dir_``, ``config_``, ``metrics_``."""

    _task = "classify"

    def __init__(self, model: str = "tf_efficientnet_lite0", *, strategy: str = "auto", pretrained: bool = True,
                 weights: str = "", unfreeze: int = 0, head_model: str = "", dropout: float = 0.0,
                 head_bn: bool = False, drop_path: float = 0.0, image_size: int = 0, augment: str = "",
                 epochs: int = 5, batch_size: int = 64, optimizer: str = "adamw", lr: float = 1e-3,
                 weight_decay: float = 0.0, schedule: str = "cosine", cycles: int = 0, grad_clip: float = 1.0,
                 label_smoothing: float = 0.0, patience: int = 0, swa: bool = False, swa_start: float = 0.75,
                 swa_lr: float = 0.0, precision: str = "auto", device: str = "auto", workers: int = -1,
                 metric: str = "", seed: int = 0, cache: str = "auto", checkpoint_every: int = 0,
                 deterministic: bool = False, log: Sequence[str] = (), val_fraction: float = 0.2,
                 strict: bool = False, path_column: str = "path", label_column: str = "label", name: str = "",
                 workspace: str = "honed-runs"):
        self._store(locals())

    def _columns(self) -> Columns:
        return Columns("classify", path_column=self.path_column, label_column=self.label_column)

    def _learned(self, predictor) -> None:
        self.classes_ = np.asarray(predictor.classes)

    def predict(self, data: Any) -> np.ndarray:
        """The most probable class name of each input (paths, a folder, a CSV/Parquet file, a DataFrame, a
        torch Dataset, or a list of paths or images)."""
        probabilities = self.predict_proba(data)  # first: it checks the estimator is fitted
        return self.classes_[probabilities.argmax(axis=1)]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities ``[N, len(classes_)]``, columns in the order of ``classes_``."""
        return self._predict_outputs(data)

    def _targets(self, rows) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes_)}
        unknown = sorted(set(rows["label"]) - set(index))
        if unknown:
            raise HonedError(f"labels {unknown[:5]} are not classes of this model ({', '.join(self.classes_)})")
        return rows["label"].map(index).to_numpy(dtype="int64")


class ImageRegressor(RegressorMixin, ImageEstimator):
    """Numeric targets from images; ``target`` names the column(s) to learn. Learned: ``target_columns_``,
    ``run_dir_``, ``config_``, ``metrics_``."""

    _task = "regress"

    def __init__(self, model: str = "tf_efficientnet_lite0", *, target: str | Sequence[str] = "target",
                 strategy: str = "auto", pretrained: bool = True, weights: str = "", unfreeze: int = 0,
                 head_model: str = "", dropout: float = 0.0, head_bn: bool = False, drop_path: float = 0.0,
                 image_size: int = 0, augment: str = "", epochs: int = 5, batch_size: int = 64,
                 optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0, schedule: str = "cosine",
                 cycles: int = 0, grad_clip: float = 1.0, patience: int = 0, swa: bool = False,
                 swa_start: float = 0.75, swa_lr: float = 0.0, precision: str = "auto", device: str = "auto",
                 workers: int = -1, metric: str = "", seed: int = 0, cache: str = "auto",
                 checkpoint_every: int = 0, deterministic: bool = False, log: Sequence[str] = (),
                 val_fraction: float = 0.2, strict: bool = False, path_column: str = "path", name: str = "",
                 workspace: str = "honed-runs"):
        self._store(locals())

    def _columns(self) -> Columns:
        return Columns("regress", path_column=self.path_column, target_columns=tuple(as_list(self.target)))

    def _learned(self, predictor) -> None:
        self.target_columns_ = list(predictor.target_columns)

    def predict(self, data: Any) -> np.ndarray:
        """Predicted values: ``[N]`` for one target, ``[N, targets]`` for several (as scikit-learn)."""
        values = self._predict_outputs(data)
        return values[:, 0] if values.shape[1] == 1 else values

    def _targets(self, rows) -> np.ndarray:
        return rows[self.target_columns_].to_numpy(dtype="float32")
