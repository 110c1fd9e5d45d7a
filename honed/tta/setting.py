"""A TTA setting: which views, and how their outputs become one prediction.

Aggregations: ``mean`` averages the views' probabilities (values for regression), ``logit`` averages their
logits before the softmax (classification only), ``learned`` takes a weighted mean of probabilities (values)
with one weight per view fitted on validation data (see ``TTAClassifier.fit``). A setting is what a
Predictor applies and what a bundle stores under "tta"; ``from_dict`` validates it strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from honed.errors import HonedError
from honed.tta.views import expand_views, get_view
from honed.tasks import get_task

AGGREGATES = ("mean", "logit", "learned")
MAX_VIEWS = 64  # a TTA setting with more views than this is a mistake, not a setting


@dataclass(frozen=True)
class TTASetting:
    """Views (expanded names) and their aggregation; ``weights`` (one per view) only for ``learned``."""

    views: tuple[str, ...]
    aggregate: str = "mean"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "views", tuple(self.views))
        if not self.views or len(self.views) > MAX_VIEWS or len(set(self.views)) != len(self.views):
            raise HonedError(f"a TTA setting needs 1 to {MAX_VIEWS} distinct views, got {list(self.views)}")
        for name in self.views:
            get_view(name)
        if self.aggregate not in AGGREGATES:
            raise HonedError(f"unknown TTA aggregation {self.aggregate!r}: use {', '.join(AGGREGATES)}")
        if (self.weights is not None) != (self.aggregate == "learned"):
            raise HonedError("TTA weights go with aggregate 'learned' only, and 'learned' needs them: "
                             "fit a TTAClassifier on validation images to get them")
        if self.weights is not None:
            w = tuple(float(v) for v in self.weights)
            if len(w) != len(self.views) or not all(math.isfinite(v) and v >= 0 for v in w) \
                    or abs(sum(w) - 1) > 1e-6:
                raise HonedError(f"TTA weights must be {len(self.views)} non-negative numbers summing to 1, "
                                 f"got {list(w)}")
            object.__setattr__(self, "weights", w)

    @classmethod
    def parse(cls, views: str | list[str] | tuple[str, ...], aggregate: str = "mean",
              weights: tuple[float, ...] | None = None) -> TTASetting:
        """From the command-line form: ``TTASetting.parse("flip,crops")``."""
        return cls(expand_views(views), aggregate, weights)

    def describe(self) -> str:
        how = {"mean": "mean probability", "logit": "mean logit", "learned": "learned weights"}[self.aggregate]
        return f"{how} of {len(self.views)} views ({', '.join(self.views)})"

    def to_dict(self) -> dict[str, Any]:
        return {"views": list(self.views), "aggregate": self.aggregate,
                "weights": None if self.weights is None else list(self.weights)}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "bundle.json") -> TTASetting:
        """Strict: exactly the keys views, aggregate, weights, of the right types and known names."""
        if not isinstance(raw, dict) or set(raw) != {"views", "aggregate", "weights"}:
            raise HonedError(f"{where} field 'tta' must be \"none\" or an object with exactly the keys views, "
                             "aggregate and weights")
        views, aggregate, weights = raw["views"], raw["aggregate"], raw["weights"]
        if not isinstance(views, list) or not all(isinstance(v, str) for v in views):
            raise HonedError(f"{where} field 'tta.views' must be a list of view names")
        if not isinstance(aggregate, str):
            raise HonedError(f"{where} field 'tta.aggregate' must be a string")
        if weights is not None and (not isinstance(weights, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in weights)):
            raise HonedError(f"{where} field 'tta.weights' must be null or a list of numbers")
        try:
            return cls(tuple(views), aggregate, None if weights is None else tuple(weights))
        except HonedError as error:
            raise HonedError(f"{where} field 'tta': {error}") from None

    def view_outputs(self, x: Tensor, forward: Callable[[Tensor], Tensor], identity: Tensor | None = None) -> Tensor:
        """Raw model outputs ``[V, B, C]`` for a float batch in [0, 1]: one batched forward per view, except the
        ``identity`` view when its outputs (the plain prediction) are given."""
        return torch.stack([(identity if name == "identity" and identity is not None else forward(get_view(name)(x)))
                            .float() for name in self.views])

    def apply(self, x: Tensor, forward: Callable[[Tensor], Tensor], task: str) -> Tensor:
        """The aggregated prediction ``[B, C]``: probabilities (classify) or values (regress)."""
        return aggregate_outputs(self.view_outputs(x, forward), task, self.aggregate, self.weights)


def aggregate_outputs(raw: Tensor, task: str, aggregate: str, weights: tuple[float, ...] | None = None) -> Tensor:
    """``[V, B, C]`` raw outputs (logits or values) -> ``[B, C]`` probabilities or values."""
    if aggregate == "logit":
        if not get_task(task).is_classification:
            raise HonedError("TTA aggregate 'logit' is for classification: use mean for regression")
        return raw.mean(dim=0).softmax(dim=1)
    outputs = get_task(task).outputs(raw, dim=2)
    if aggregate == "learned":
        if weights is None:
            raise HonedError("TTA aggregate 'learned' needs fitted weights: call TTAClassifier.fit first")
        w = torch.as_tensor(weights, dtype=outputs.dtype, device=outputs.device).view(-1, 1, 1)
        return (outputs * w).sum(dim=0)
    return outputs.mean(dim=0)


def as_setting(tta: TTASetting | str | None) -> TTASetting | None:
    """None or "none" -> no TTA; a view string such as "flip,crops" -> its mean-probability setting."""
    if tta is None or isinstance(tta, TTASetting):
        return tta
    if isinstance(tta, str):
        return None if tta.strip() in ("", "none") else TTASetting.parse(tta)
    raise HonedError(f"tta must be a view string such as 'flip,crops' or a TTASetting, not {type(tta).__name__}")
