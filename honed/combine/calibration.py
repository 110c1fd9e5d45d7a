"""Temperature scaling: one number that makes a classifier's probabilities honest, fitted on validation outputs.

    calibration = fit_calibration(val_probs, val_targets)       # LBFGS on the NLL of softmax(log p / T)
    calibrated = apply_temperature(probs, calibration.temperature)

A classifier's log-probabilities are its logits less a per-row constant, so ``softmax(log p / T)`` is
``softmax(logits / T)``: the fit and its use need only the probabilities a run already saves (a soft-vote
ensemble is fitted on its combined log-probabilities the same way). Dividing by ``T > 0`` keeps every row's
order, so the predicted class never changes (Guo et al. 2017, "On calibration of modern neural networks").
``calibration.json`` in a run folder and ``"calibration"`` in bundle.json hold ``Calibration.to_dict()``;
a run or bundle without it predicts with temperature 1 and is reported as uncalibrated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.artifacts.run_folder import CALIBRATION_FILE, LABELS_FILE, RunFolder
from honed.tracking.atomic import write_json

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017
MIN_IMAGES = 20  # fewer validation images than this: no temperature is fitted (it would fit noise)
LOG_FLOOR = 1e-12  # probabilities saved as float32 can round to 0; their log is floored, not -inf
CALIBRATED_METHODS = ("soft", "weighted")  # ensemble rules whose output is a probability (hard: vote shares)


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did on the images it was fitted on."""

    temperature: float  # > 1 softens over-confident probabilities, < 1 sharpens timid ones
    images: int  # validation images it was fitted on
    ece_before: float  # expected calibration error (ECE_BINS bins), raw probabilities
    ece_after: float
    nll_before: float  # mean negative log-likelihood of the true class
    nll_after: float
    method: str = "temperature"
    fitted_on: str = "validation"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Calibration":
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**fields)


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), LOG_FLOOR, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """``softmax(log p / T)`` row by row; ``T`` None or 1 returns ``probs`` unchanged. Argmax is kept."""
    if temperature is None or temperature == 1.0 or len(probs) == 0:
        return probs
    z = log_probabilities(probs) / temperature
    z -= z.max(axis=-1, keepdims=True)
    out = np.exp(z)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.asarray(probs).dtype, copy=False)


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, steps: int = 50) -> float:
    """The ``T`` minimizing the NLL of ``softmax(logits / T)``: LBFGS on ``log T`` (so ``T`` stays positive)."""
    z = torch.tensor(np.asarray(logits, dtype=np.float64))  # copies: inputs may be read-only views
    y = torch.tensor(np.asarray(targets, dtype=np.int64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return temperature if math.isfinite(temperature) else 1.0


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Confidence-weighted gap between confidence and accuracy over ``bins`` equal-width confidence bins."""
    return float(sum(row.images * abs(row.confidence - row.accuracy) for row in reliability(probs, targets, bins)
                     .itertuples()) / max(len(targets), 1))


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """One row per non-empty confidence bin: its edges, images, mean confidence and accuracy (the diagram)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(targets)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = [{"low": edges[b], "high": edges[b + 1], "images": int((index == b).sum()),
             "confidence": float(confidence[index == b].mean()), "accuracy": float(correct[index == b].mean())}
            for b in range(bins) if (index == b).any()]
    return pd.DataFrame(rows, columns=["low", "high", "images", "confidence", "accuracy"])


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray) -> float:
    targets = np.asarray(targets)
    return float(-log_probabilities(probs)[np.arange(len(targets)), targets].mean())


def fit_calibration(probs: np.ndarray, targets: np.ndarray) -> Calibration | None:
    """A temperature fitted on ``probs`` [N, C] and class indices ``targets`` [N]; None below MIN_IMAGES."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if len(targets) < MIN_IMAGES or probs.ndim != 2 or probs.shape[1] < 2:
        return None
    temperature = fit_temperature(log_probabilities(probs), targets)
    after = apply_temperature(probs, temperature)
    return Calibration(temperature, len(targets), expected_calibration_error(probs, targets),
                       expected_calibration_error(after, targets), negative_log_likelihood(probs, targets),
                       negative_log_likelihood(after, targets))


def table_outputs(table: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [N, C] and class indices [N] from a predictions table (``p:CLASS`` columns, ``target``)."""
    probs = table[[f"p:{c}" for c in classes]].to_numpy(np.float64)
    index = {c: i for i, c in enumerate(classes)}
    return probs, np.asarray([index[str(t)] for t in table["target"]])


def calibrate_run(run_dir: Path) -> Calibration | None:
    """Fit the temperature on a classification run's saved validation predictions and write it to
    ``calibration.json``; None (and nothing written) for regression, or without enough validation images."""
    run = RunFolder(Path(run_dir))
    if not (run.path / LABELS_FILE).is_file():
        return None
    labels, table = run.labels(), run.predictions("val")
    if table is None or labels.task != "classify":
        return None
    calibration = fit_calibration(*table_outputs(table, labels.classes))
    if calibration is not None:
        write_json(run.path / CALIBRATION_FILE, calibration.to_dict())
    return calibration


def calibration_words(raw: dict[str, Any] | None) -> str:
    """One sentence on a model's calibration record (``Calibration.to_dict()``, or None: uncalibrated)."""
    if raw is None:
        return ("Not calibrated: probabilities are the model's raw softmax (temperature 1); a run trained with "
                "this honed fits a temperature on its validation predictions.")
    c = Calibration.from_dict(raw)
    return (f"Temperature {c.temperature:.3f}, fitted on {c.images} validation images: expected calibration error "
            f"({ECE_BINS} bins) {c.ece_before:.4f} -> {c.ece_after:.4f}, NLL {c.nll_before:.4f} -> {c.nll_after:.4f}. "
            "Predictions use the calibrated probabilities (the predicted class is unchanged); `--no-calibration` "
            "or `calibrate=False` gives the raw ones.")
