"""From ranked weaknesses to recommendations in the terms of the practice, each with its evidence:

small objects -> scale augmentation; colours, lighting, contrast -> colour augmentation; rotated objects ->
rotation; blurry or noisy images -> blur and noise; off-centre objects -> translation; a train/validation gap
that no single factor explains (the relative gap minus the best factor score) -> regularization (dropout,
weight decay) and more augmentation. Classes that fail most are reported as slices, not recommendations:
under a shift they are the classes the shift hurts, which more data of the same kind would not fix.

"More augmentation" depends on the images (:mod:`honed.analyze.image_sizes`): small images (median shorter
side up to 64 px, CIFAR-like) get the CIFAR recipe's reflect-pad random crop; photos of ordinary size get
the ImageNet recipe's random resized crops and TrivialAugmentWide (torchvision's references/classification
presets), one standard policy rather than a pile of hand-picked ops. The recommendation's ``reason`` says
which, with the size measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from honed.analyze.image_sizes import SMALL_SIDE, ImageSizes
from honed.analyze.ranking import MIN_SCORE, FactorScore
from honed.augment import parse_policy
from honed.augment.policy import Policy

APPLY_SHARE = 0.5  # improve applies the recommendations scoring at least this share of the top score
MAX_APPLIED = 2  # ... and at most this many, so one run tests a few changes, not everything at once
SMALL_IMAGE_AUGMENTATION = "crop:0.125"  # the CIFAR recipe (pad 4 px at 32 px): shifts, loses no pixels
PHOTO_AUGMENTATION = "resized_crop:0.35,trivialaugment"  # the ImageNet recipe; area >= 0.35 for small data sets
ALTERNATIVES = (frozenset({"crop", "resized_crop"}), frozenset({"randaugment", "trivialaugment"}))  # one per policy

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
    reason: str = ""  # why this augmentation for these images, in words ("" when the title says it all)
    regularization: dict[str, float] = field(default_factory=dict)  # drop_rate, weight_decay to set
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def recommend(factors: Sequence[FactorScore], *, gap: dict, drop_rate: float, weight_decay: float,
              sizes: ImageSizes | None = None, quality: dict | None = None) -> list[Recommendation]:
    """Significant weaknesses grouped by remedy, strongest first; ``sizes`` (the run's original images)
    chooses the augmentation of a regularization recommendation; ``quality`` (split -> flag -> share, from
    ``honed.data.quality.split_quality``) adds blur augmentation for a blur-heavy validation set."""
    out = []
    for group in dict.fromkeys(f.group for f in factors):
        members = [f for f in factors if f.group == group and f.significant]
        if members:
            top = max(members, key=lambda f: f.score)
            out.append(Recommendation(group, TITLES[group], top.score, top.policy,
                                      evidence={"factors": [_factor_evidence(f) for f in members]}))
    unexplained = gap["relative_gap"] - max((f.score for f in factors), default=0.0)
    if unexplained >= MIN_SCORE:
        policy, reason = more_augmentation(sizes)
        out.append(Recommendation(
            "regularization", TITLES["regularization"], float(min(unexplained, 1.0)), policy, reason,
            {"drop_rate": round(min(max(drop_rate + 0.2, 0.2), 0.5), 2),
             "weight_decay": max(weight_decay * 5, 0.05)},
            evidence={"gap": gap, "unexplained_share": float(unexplained),
                      "image_sizes": sizes.to_dict() if sizes else {}}))
    out += blur_heavy_validation(quality, [r.group for r in out])
    return sorted(out, key=lambda r: -r.score)


# --- image quality (honed.data.quality): a validation set with many blurry images asks for blur -------------
BLUR_HEAVY = 0.10  # share of blurry validation images from which blur augmentation is recommended ...
BLUR_OVER_TRAIN = 2.0  # ... when it is also this many times the training images' share
QUALITY_BLUR_POLICY = "blur:1@0.5,noise:0.03@0.3"  # a sigma-1 blur, as the blur factor's policy at sigma 1


def blur_heavy_validation(quality: dict | None, groups: Sequence[str]) -> list[Recommendation]:
    """A blur recommendation when the validation images are much blurrier than the training ones (none when
    the blur factor already recommends it); its score is the excess share of blurry validation images."""
    val = ((quality or {}).get("val") or {}).get("blurry")
    train = ((quality or {}).get("train") or {}).get("blurry", 0.0)
    if val is None or "blur" in groups or val < BLUR_HEAVY or val < BLUR_OVER_TRAIN * train:
        return []
    return [Recommendation("blur", f"{val:.0%} of the validation images are blurry ({train:.0%} of the training "
                           "ones): train with blur augmentation", float(min(val - train, 1.0)), QUALITY_BLUR_POLICY,
                           "image quality flags of honed data check: variance of the Laplacian, threshold from "
                           "the data", evidence={"quality": {"val_blurry": val, "train_blurry": train}})]


def more_augmentation(sizes: ImageSizes | None) -> tuple[str, str]:
    """The augmentation that fits images of these sizes, and why, with the measure."""
    if sizes is None:
        return SMALL_IMAGE_AUGMENTATION, ("original image sizes unreadable: the reflect-pad random crop, "
                                          "label-preserving for nearly all image data")
    if sizes.small:
        return SMALL_IMAGE_AUGMENTATION, (
            f"{sizes.describe()}: the reflect-pad random crop of the CIFAR recipe, which shifts them by a few "
            f"pixels and loses none; random resized crops suit photos larger than {SMALL_SIDE} px")
    return PHOTO_AUGMENTATION, (
        f"{sizes.describe()}: random resized crops, as ImageNet training uses, and TrivialAugmentWide rather "
        f"than hand-picked ops; the reflect-pad crop suits small images (up to {SMALL_SIDE} px)")


def to_apply(recommendations: Sequence[Recommendation]) -> list[Recommendation]:
    """The recommendations ``improve`` applies: those with something to change, near the top score."""
    actionable = [r for r in recommendations if r.policy or r.regularization]
    if not actionable:
        return []
    best = actionable[0].score
    return [r for r in actionable if r.score >= APPLY_SHARE * best][:MAX_APPLIED]


def merge_policy(base: str, additions: Sequence[str]) -> str:
    """``base`` with each addition's items appended; an item of an augmentation already there replaces it, and
    so does one of its alternative (``resized_crop`` replaces ``crop``, ``trivialaugment`` ``randaugment``)."""
    items = list(parse_policy(base).items)
    for fragment in additions:
        for item in parse_policy(fragment).items:
            slot = _slot(item.name, [i.name for i in items])
            if slot is None:
                items.append(item)
            else:
                items[slot] = item  # in place: a policy's order is the order ops run in
    return str(Policy(tuple(items)))


def _slot(name: str, names: list[str]) -> int | None:
    """Where ``name`` goes in a policy of ``names``: its own place, or an alternative's; None: appended."""
    if name in names:
        return names.index(name)
    same = next((group for group in ALTERNATIVES if name in group), frozenset())
    return next((i for i, other in enumerate(names) if other in same), None)


def _factor_evidence(f: FactorScore) -> dict:
    return {"factor": f.name, "score": f.score, "expected_drop": f.expected_drop, "concentration": f.concentration,
            "matched_strength": f.matched_strength, "sensitivity": dict(zip(map(str, f.strengths), f.sensitivity)),
            "shift_auc": f.shift_auc, "slice": f.slice, "slice_failure": f.slice_failure,
            "rest_failure": f.rest_failure, "slice_ci": f.slice_ci, "examples": f.examples}
