"""The two tasks honed learns, as objects: what a model's outputs mean, how they are trained, scored and combined.

Configs, manifests, the ledger and bundles keep the task's name (``"classify"`` or ``"regress"``); code that
acts differently per task asks the task object (``get_task(name)``) instead of comparing strings:

    task = get_task(manifest.task)
    loss = task.loss(logits, targets)
    probabilities_or_values = task.outputs(logits)
    metrics = task.score(outputs, targets)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from honed.errors import HonedError
from honed.metrics import classification_metrics, regression_metrics


class DiversityWords(NamedTuple):
    """How an ensemble diversity report names (and scales) its two member-by-member matrices for a task."""

    disagreement: str  # the first matrix, in words: "top-class disagreement" or "mean absolute difference"
    disagreement_title: str  # its short title over a plot
    correlation: str  # the second matrix: "error correlation" or "residual correlation"
    disagreement_range: tuple[float | None, float | None]  # colour scale of the first matrix; None: from the data


@dataclass(frozen=True)
class Task:
    """What every task answers; ``Classification`` and ``Regression`` below are the two there are."""

    name: str  # as stored in configs, manifests, the ledger and bundles
    metrics: tuple[str, ...]  # the metrics it reports; the first is the default main metric
    combine_rule: str  # how ensemble members (and TTA views) combine by default (honed.combine.rules)
    outputs_word: str  # "classes" or "targets": what one output is, in messages
    model_word: str  # "classifier" or "regressor"
    labels_key: str  # the field of a bundle or manifest holding its output names: "classes" or "target_columns"
    failure_word: str  # what the mean of ``failures`` is: "error rate" or "mean absolute error"
    diversity: DiversityWords  # the words of an ensemble diversity report

    @property
    def default_metric(self) -> str:
        return self.metrics[0]

    @property
    def is_classification(self) -> bool:
        return isinstance(self, Classification)

    def num_outputs(self, classes: Sequence[str], target_columns: Sequence[str]) -> int:
        return len(self.output_names(classes, target_columns))

    def output_names(self, classes: Sequence[str], target_columns: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0,
             reduction: str = "mean") -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Raw model outputs -> what a prediction reports: probabilities (classify) or values (regress)."""
        raise NotImplementedError

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """The task's metrics of ``outputs`` against ``targets``, with the training loss as ``loss``."""
        raise NotImplementedError

    def failures(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per-sample failure ``[N]`` (float64): 1 - correct (classify) or the mean absolute error (regress)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Classification(Task):
    name: str = "classify"
    metrics: tuple[str, ...] = ("accuracy", "macro_f1", "log_loss")
    combine_rule: str = "soft"
    outputs_word: str = "classes"
    model_word: str = "classifier"
    labels_key: str = "classes"
    failure_word: str = "error rate"
    diversity: DiversityWords = DiversityWords("top-class disagreement", "disagreement", "error correlation", (0, 1))

    def output_names(self, classes: Sequence[str], target_columns: Sequence[str]) -> list[str]:
        return list(classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0,
             reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy, with hard (class index) or soft (mixup, cutmix) targets."""
        return F.cross_entropy(outputs.float(), targets, label_smoothing=label_smoothing, reduction=reduction)

    def outputs(self, logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return logits.softmax(dim=dim)

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        scores = classification_metrics(outputs, targets)
        return {**scores, "loss": scores["log_loss"]}

    def failures(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return (outputs.argmax(axis=1) != targets).astype(np.float64)


@dataclass(frozen=True)
class Regression(Task):
    name: str = "regress"
    metrics: tuple[str, ...] = ("mae", "rmse")
    combine_rule: str = "mean"
    outputs_word: str = "targets"
    model_word: str = "regressor"
    labels_key: str = "target_columns"
    failure_word: str = "mean absolute error"
    diversity: DiversityWords = DiversityWords("mean absolute difference", "mean |difference|",
                                               "residual correlation", (None, None))

    def output_names(self, classes: Sequence[str], target_columns: Sequence[str]) -> list[str]:
        return list(target_columns)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0,
             reduction: str = "mean") -> torch.Tensor:
        """Mean squared error over the targets (label smoothing has no meaning here)."""
        per_sample = F.mse_loss(outputs.float(), targets.float().view_as(outputs), reduction="none").mean(dim=1)
        return per_sample.mean() if reduction == "mean" else per_sample

    def outputs(self, logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return logits

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        scores = regression_metrics(outputs, targets)
        return {**scores, "loss": float(((outputs.reshape(targets.shape) - targets) ** 2).mean())}

    def failures(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return np.abs(outputs.reshape(targets.shape) - targets).mean(axis=1).astype(np.float64)


CLASSIFY = Classification()
REGRESS = Regression()
TASKS = MappingProxyType({task.name: task for task in (CLASSIFY, REGRESS)})  # read-only: two tasks, fixed


def get_task(task: str | Task) -> Task:
    """The task object for a name (or the object itself); HonedError naming the two there are."""
    if isinstance(task, Task):
        return task
    try:
        return TASKS[task]
    except (KeyError, TypeError):
        raise HonedError(f"--task must be one of {', '.join(TASKS)}, not {task!r}") from None


def metric_task(metric: str) -> Task:
    """The task a metric belongs to."""
    for task in TASKS.values():
        if metric in task.metrics:
            return task
    raise HonedError(f"--metric {metric!r} is unknown: use one of "
                     f"{', '.join(m for t in TASKS.values() for m in t.metrics)}")
