"""The gbm probe head (HistGradientBoosting on frozen features), and how it predicts without pickling: its
training data is stored, and the trees refitted.

``fit_gbm`` is registered as the ``gbm`` head in ``honed.models.heads.sklearn.HEADS``.

HistGradientBoosting fitted with a fixed ``random_state`` on the same features (one thread, as the probe fits
it) grows the same trees, so a gbm probe run keeps ``probe_features.safetensors`` (the head's training
features and targets, plus the validation features and the run's validation outputs) instead of the fitted
model. Loading refits through ``fit_gbm``, the function the probe fitted with, then checks the refit against
the stored validation outputs: a scikit-learn that grows different trees is refused, naming the versions,
rather than predicting something the run never scored.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from honed.errors import HonedError
from honed.models.heads.sklearn import FittedHead, register_head, sklearn_threads
from honed.tracking.atomic import atomic_path
from honed.tasks import get_task

FEATURES_FILE = "probe_features.safetensors"
FORMAT_NAME = "honed-gbm-head"
FORMAT_VERSION = "1"
REFIT_ATOL = 1e-6  # refit vs. the run's validation outputs: the same trees agree to rounding
MIN_LOG_PROB = 1e-30  # a class the trees give probability 0: log of this instead of -inf
GBM_ROUNDS = 100  # boosting iterations unless config.model.gbm_rounds (honed boost --method gbm --rounds) says
GBM_LEAF = 20  # scikit-learn's min_samples_leaf; fewer on tiny data (gbm_leaf), so the trees can split at all


@register_head("gbm", tasks=("classify", "regress"))
def fit_gbm(features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int, seed: int = 0,
            rounds: int = GBM_ROUNDS, leaf: int | None = None, **_options: Any) -> FittedHead:
    """HistGradientBoosting on ``features``: ``rounds`` iterations, ``leaf`` rows a leaf at least (None:
    ``gbm_leaf`` of N), one model per target for regression."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    leaf = gbm_leaf(len(features)) if leaf is None else leaf
    options = dict(max_iter=rounds, early_stopping=False, random_state=seed, min_samples_leaf=leaf)
    if get_task(task).is_classification:
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


def gbm_leaf(rows: int) -> int:
    """min_samples_leaf for ``rows`` training rows: scikit-learn's 20, or a tenth of the rows on tiny data."""
    return max(1, min(GBM_LEAF, rows // 10))


def save_gbm_data(path: Path, *, train_features: np.ndarray, train_targets: np.ndarray, val_features: np.ndarray,
                  val_outputs: np.ndarray, task: str, outputs: int, seed: int, rounds: int, leaf: int) -> None:
    """Write what refitting needs (the fit's settings: ``rounds``, ``leaf`` = min_samples_leaf, ``seed``) and
    what checks the refit, as safetensors, atomically."""
    import sklearn
    from safetensors.numpy import save

    targets = train_targets.astype(np.int64 if get_task(task).is_classification else np.float64)
    tensors = {"train_features": np.ascontiguousarray(train_features, dtype=np.float32),
               "train_targets": np.ascontiguousarray(targets),
               "val_features": np.ascontiguousarray(val_features, dtype=np.float32),
               "val_outputs": np.ascontiguousarray(val_outputs, dtype=np.float64)}
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "gbm", "task": task,
                "outputs": str(outputs), "seed": str(seed), "rounds": str(rounds), "min_samples_leaf": str(leaf),
                "sklearn": sklearn.__version__}
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(save(tensors, metadata=metadata))


@dataclass
class GbmHead:
    """Refitted trees: ``predict(features [N, F])`` -> probabilities [N, C] (classify) or values [N, T]."""

    task: str
    outputs: int
    predict: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def from_file(cls, path: str | Path) -> GbmHead:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise HonedError(f"cannot read {path} ({error.strerror}): train the gbm probe again") from None
        return cls.from_bytes(data, where=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = FEATURES_FILE) -> GbmHead:
        """Parse (data only: safetensors and a JSON header), refit, and check the refit; HonedError if it differs."""
        import sklearn

        metadata, tensors = _parse(data, where)
        task, outputs, seed = metadata["task"], int(metadata["outputs"]), int(metadata["seed"])
        # the fit's own settings; files from before they were recorded used the defaults of then
        rounds = int(metadata.get("rounds", GBM_ROUNDS))
        leaf = int(metadata.get("min_samples_leaf", GBM_LEAF))
        with sklearn_threads():  # one thread, as the probe fitted it
            head = fit_gbm(tensors["train_features"], tensors["train_targets"], task=task, outputs=outputs,
                           seed=seed, rounds=rounds, leaf=leaf)
        refit = head.predict(tensors["val_features"])
        expected = tensors["val_outputs"]
        if refit.shape != expected.shape or not np.allclose(refit, expected, rtol=0, atol=REFIT_ATOL):
            gap = float(np.abs(refit - expected).max()) if refit.shape == expected.shape else float("inf")
            raise HonedError(
                f"the gbm head refitted from {where} does not reproduce the run's validation predictions (max "
                f"difference {gap:.3g}): it was trained with scikit-learn {metadata['sklearn']} and "
                f"{rounds} rounds, this is scikit-learn {sklearn.__version__}; install scikit-learn "
                f"{metadata['sklearn']} or train the probe again")
        return cls(task, outputs, head.predict)


def _parse(data: bytes, where: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors.numpy import load

    try:
        (size,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8:8 + size].decode("utf-8")).get("__metadata__") or {}
        tensors = load(data)
    except Exception as error:  # a truncated or foreign file: safetensors and json raise several types
        raise HonedError(f"{where} is not a gbm probe features file ({type(error).__name__}: {error}): "
                         "train the gbm probe again") from None
    needed = {"train_features", "train_targets", "val_features", "val_outputs"}
    if metadata.get("format") != FORMAT_NAME or not needed <= set(tensors):
        raise HonedError(f"{where} is not a gbm probe features file: train the gbm probe again")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise HonedError(f"{where} has format_version {metadata.get('format_version')!r}; this honed reads "
                         f"{FORMAT_VERSION}: upgrade honed or train the probe again")
    if metadata.get("task") not in ("classify", "regress"):
        raise HonedError(f"{where}: unknown task {metadata.get('task')!r}")
    return metadata, tensors


class GbmProbeModel(nn.Module):
    """The frozen network and its refitted trees as one model: images -> the network's penultimate features
    (exactly those the probe was fitted on) -> trees. Returns log-probabilities for classification (so a
    softmax gives the trees' probabilities back) or values for regression."""

    def __init__(self, network: nn.Module, head: GbmHead):
        super().__init__()
        self.network = network
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from honed.models.features import captured_features

        with torch.no_grad(), captured_features(self.network) as captured:
            self.network(x)
        features = captured[-1].reshape(len(x), -1).numpy()
        out = self.head.predict(features)
        if get_task(self.head.task).is_classification:  # log-probabilities: a softmax gives them back
            out = np.log(np.clip(out, MIN_LOG_PROB, None))
        return torch.from_numpy(out.astype(np.float32)).to(x.device)


def gbm_head_file(run_dir: Path) -> Path | None:
    """The features file of a gbm probe run that can predict, or None for any other run."""
    path = Path(run_dir) / FEATURES_FILE
    return path if path.is_file() else None


def with_gbm_head(network: nn.Module, run_dir: Path) -> nn.Module:
    """``network`` wrapped with the run's refitted trees when it is a gbm probe run; unchanged otherwise."""
    path = gbm_head_file(run_dir)
    return network if path is None else GbmProbeModel(network, GbmHead.from_file(path))
