"""From ranked weaknesses to recommendations in the terms of the practice, each with its evidence:

small objects -> scale augmentation; colours, lighting, contrast -> colour augmentation; rotated objects ->
rotation; blurry or noisy images -> blur and noise; off-centre objects -> translation; a train/validation gap
that no single factor explains (the relative gap minus the best factor score) -> regularization (dropout,
weight decay) and more augmentation. Classes that fail most are reported as slices, not recommendations:
under a shift they are the classes the shift hurts, which more data of the same kind would not fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from honed.analyze.ranking import MIN_SCORE, FactorScore
from honed.augment import parse_policy
from honed.augment.policy import Policy

APPLY_SHARE = 0.5  # improve applies the recommendations scoring at least this share of the top score
MAX_APPLIED = 2  # ... and at most this many, so one run tests a few changes, not everything at once
MORE_AUGMENTATION = "crop:0.125"  # label-preserving for nearly all image data

TITLES = {
    "scale": "fails on small objects: train with scale (zoom-out) augmentation",
    "rotation": "fails on rotated objects: train with rotation augmentation",
    "colour": "fails on unusual colours, lighting or contrast: train with colour augmentation",
    "blur": "fails on blurry images: train with blur and noise augmentation",
    "noise": "fails on noisy images: train with noise and blur augmentation",
    "position": "fails on off-centre objects: train with translation augmentation",
    "flip": "fails on mirrored images: train with horizontal flips",
    "regularization": "train/validation gap that no single factor explains: regularize and augment more",
}


@dataclass
class Recommendation:
    group: str  # scale, rotation, colour, blur, noise, position, flip, regularization
    title: str
    score: float  # the strongest evidence behind it, share of the headroom (see honed.analyze.ranking)
    policy: str = ""  # augmentation fragment to add, e.g. "rotate:45@0.8"; "" when not an augmentation
    regularization: dict[str, float] = field(default_factory=dict)  # drop_rate, weight_decay to set
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def recommend(factors: Sequence[FactorScore], *, gap: dict, drop_rate: float,
              weight_decay: float) -> list[Recommendation]:
    """Significant weaknesses grouped by remedy, strongest first."""
    out = []
    for group in dict.fromkeys(f.group for f in factors):
        members = [f for f in factors if f.group == group and f.significant]
        if members:
            top = max(members, key=lambda f: f.score)
            out.append(Recommendation(group, TITLES[group], top.score, top.policy,
                                      evidence={"factors": [_factor_evidence(f) for f in members]}))
    unexplained = gap["relative_gap"] - max((f.score for f in factors), default=0.0)
    if unexplained >= MIN_SCORE:
        out.append(Recommendation(
            "regularization", TITLES["regularization"], float(min(unexplained, 1.0)), MORE_AUGMENTATION,
            {"drop_rate": round(min(max(drop_rate + 0.2, 0.2), 0.5), 2),
             "weight_decay": max(weight_decay * 5, 0.05)},
            evidence={"gap": gap, "unexplained_share": float(unexplained)}))
    return sorted(out, key=lambda r: -r.score)


def to_apply(recommendations: Sequence[Recommendation]) -> list[Recommendation]:
    """The recommendations ``improve`` applies: those with something to change, near the top score."""
    actionable = [r for r in recommendations if r.policy or r.regularization]
    if not actionable:
        return []
    best = actionable[0].score
    return [r for r in actionable if r.score >= APPLY_SHARE * best][:MAX_APPLIED]


def merge_policy(base: str, additions: Sequence[str]) -> str:
    """``base`` with each addition's items appended; an item of an augmentation already there replaces it."""
    items = list(parse_policy(base).items)
    for fragment in additions:
        for item in parse_policy(fragment).items:
            names = [i.name for i in items]
            if item.name in names:
                items[names.index(item.name)] = item  # in place: a policy's order is the order ops run in
            else:
                items.append(item)
    return str(Policy(tuple(items)))


def _factor_evidence(f: FactorScore) -> dict:
    return {"factor": f.name, "score": f.score, "expected_drop": f.expected_drop, "concentration": f.concentration,
            "matched_strength": f.matched_strength, "sensitivity": dict(zip(map(str, f.strengths), f.sensitivity)),
            "shift_auc": f.shift_auc, "slice": f.slice, "slice_failure": f.slice_failure,
            "rest_failure": f.rest_failure, "slice_ci": f.slice_ci, "examples": f.examples}
