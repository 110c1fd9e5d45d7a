"""How member outputs become one prediction: soft, hard, weighted and mean voting, behind one registry.

Member outputs are stacked as ``[M, N, C]``: M members, N samples, C class probabilities (classification)
or C target values (regression). Every rule returns ``[N, C]`` in the same form, so an ensemble's output
is scored, tabled and exported exactly like one model's.

Hard voting's tie rule (deterministic, documented): the class with the most (weighted) votes wins; among
classes with exactly equal votes, the one with the highest (weighted) mean member probability; if that is
equal too, the lowest class index (classes are sorted by name). A member's own vote is its argmax, which
picks the lowest index among equal probabilities. The output row is the vote shares, with the winner
nudged up by one float step where votes tie, so ``argmax`` of the output is always the tie rule's class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from honed.errors import HonedError
from honed.registry import Registry
from honed.tasks import get_task

TIE_RULE = ("most votes; then highest mean member probability among the tied classes; "
            "then the lowest class index (classes sorted by name)")

Combiner = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class MethodSpec:
    """One combination method: what it does, which tasks it serves, and whether it learns weights."""

    name: str
    combine: Combiner  # (outputs [M, N, C], weights [M] or None) -> [N, C]
    tasks: tuple[str, ...]  # "classify", "regress"
    fitted: bool  # True: weights are fitted on validation predictions (cross-fitted for the score)
    help: str


METHODS: Registry[MethodSpec] = Registry("ensemble method")  # filled by @register_method at import


def register_method(name: str, *, tasks: Sequence[str], fitted: bool = False, help: str = "",
                    override: bool = False) -> Callable[[Combiner], Combiner]:
    """Register a combination rule under ``name``; registering a name twice is an error unless ``override``."""

    def decorator(combine: Combiner) -> Combiner:
        METHODS.register(name, MethodSpec(name, combine, tuple(tasks), fitted, help), override=override)
        return combine

    return decorator


def list_methods(pattern: str = "*") -> list[str]:
    """Sorted names of the registered combination methods matching a shell wildcard."""
    return sorted(METHODS.names(pattern))


def get_method(name: str, task: str | None = None) -> MethodSpec:
    """The method ``name``; an unknown name, or one that does not fit ``task``, raises naming the valid ones."""
    spec = METHODS[name]
    if task is not None and task not in spec.tasks:
        fits = [n for n in list_methods() if task in METHODS[n].tasks]
        raise HonedError(f"ensemble method {name!r} is for {' and '.join(spec.tasks)}, not {task}: "
                         f"use {', '.join(fits)}")
    return spec


def default_method(task: str) -> str:
    """Soft voting for classification, averaging for regression."""
    return get_task(task).combine_rule


def check_outputs(outputs: np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray | None:
    """Validate ``[M, N, C]`` outputs and ``[M]`` weights; returns the weights as an array (or None)."""
    if outputs.ndim != 3 or outputs.shape[0] < 1:
        raise HonedError(f"member outputs must be [members, samples, classes], got shape {outputs.shape}")
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (outputs.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise HonedError(f"ensemble weights must be {outputs.shape[0]} non-negative numbers with a positive sum, "
                         f"got {list(np.atleast_1d(w))}")
    return w


def _normalized(weights: np.ndarray | None, members: int) -> np.ndarray:
    w = np.ones(members) if weights is None else np.asarray(weights, dtype=np.float64)
    return w / w.sum()


@register_method("soft", tasks=("classify",), help="average the members' probabilities (equal weights)")
def soft_vote(outputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The (weighted) mean of the members' probabilities."""
    w = _normalized(check_outputs(outputs, weights), outputs.shape[0])
    return np.tensordot(w, outputs.astype(np.float64), axes=1)


@register_method("weighted", tasks=("classify", "regress"), fitted=True,
                 help="weighted average; weights fitted on validation predictions, cross-fitted for the score")
def weighted_vote(outputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """A weighted mean of probabilities (classification) or values (regression)."""
    return soft_vote(outputs, weights)


@register_method("mean", tasks=("regress",), help="average the members' predicted values")
def mean_values(outputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The (weighted) mean of the members' values."""
    return soft_vote(outputs, weights)


@register_method("hard", tasks=("classify",), help="majority vote of the members' top classes; ties by "
                 "mean probability, then lowest class index")
def hard_vote(outputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Vote shares per class, with ties broken by the documented rule (see the module docstring)."""
    checked = check_outputs(outputs, weights)
    members, n, classes = outputs.shape
    w = np.ones(members) if checked is None else checked  # unweighted votes are whole numbers: ties are exact
    votes = np.zeros((n, classes))
    picks = outputs.argmax(axis=2)  # [M, N]: the lowest index among a member's equal probabilities
    for m in range(members):
        votes[np.arange(n), picks[m]] += w[m]
    winners = hard_labels_from_votes(votes, np.tensordot(w / w.sum(), outputs.astype(np.float64), axes=1))
    shares = votes / w.sum()
    rows = np.flatnonzero((votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1)
    shares[rows, winners[rows]] = np.nextafter(shares[rows, winners[rows]], np.inf)
    return shares


@register_method("samme", tasks=("classify",), help="AdaBoost (SAMME): hard vote weighted by each round's alpha")
def samme_vote(outputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """A weighted hard vote; boosting stores each round's alpha as the member's weight."""
    return hard_vote(outputs, weights)


def hard_labels_from_votes(votes: np.ndarray, mean_probs: np.ndarray) -> np.ndarray:
    """The tie rule: most votes, then highest mean probability, then lowest index."""
    best = votes == votes.max(axis=1, keepdims=True)
    score = np.where(best, mean_probs, -np.inf)
    return score.argmax(axis=1)  # argmax returns the first (lowest) index among equal scores


@dataclass(frozen=True)
class CombinationRule:
    """A method and its member weights (None: equal), as stored in ensemble.json and ensemble bundles."""

    method: str
    weights: tuple[float, ...] | None = None

    def combine(self, outputs: np.ndarray) -> np.ndarray:
        """``[M, N, C]`` member outputs -> ``[N, C]`` ensemble outputs."""
        return get_method(self.method).combine(outputs, None if self.weights is None else np.asarray(self.weights))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weights": None if self.weights is None else list(self.weights)}

    @classmethod
    def from_dict(cls, raw: Any, members: int, where: str = "ensemble.json") -> CombinationRule:
        """Strictly validated: a known method, and None or ``members`` non-negative finite weights."""
        if not isinstance(raw, dict) or set(raw) != {"method", "weights"}:
            raise HonedError(f"{where}: 'rule' must be an object with exactly the keys method and weights")
        method, weights = raw["method"], raw["weights"]
        if not isinstance(method, str):
            raise HonedError(f"{where}: 'rule.method' must be a string")
        get_method(method)
        if weights is not None:
            ok = isinstance(weights, list) and len(weights) == members and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in weights)
            if not ok:
                raise HonedError(f"{where}: 'rule.weights' must be null or {members} numbers, one per member")
            check_outputs(np.zeros((members, 1, 1)), weights)
            weights = tuple(float(v) for v in weights)
        return cls(method, weights)
