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

One diagnosis (issue 18): the fit report's verdict and the shifts between the splits
(:mod:`honed.analyze.shift`) feed this same list. A shift that transforming the validation images back
explains gets the augmentation that covers it, and the epochs that augmentation needs (``training``). An
underfitting model is told to train longer, with a higher learning rate or more capacity, never to
regularize; an overfitting one to regularize and augment.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from honed.analyze.image_sizes import SMALL_SIDE, ImageSizes
from honed.analyze.ranking import MIN_SCORE, NAMES_SHIFT, FactorScore
from honed.augment import parse_policy
from honed.augment.policy import Policy

APPLY_SHARE = 0.5  # improve applies the recommendations scoring at least this share of the top score
MAX_APPLIED = 2  # ... and at most this many, so one run tests a few changes, not everything at once
MEASURED_WEIGHT = 2.0  # a measured shift's score against sensitivities when ranking (see _rank)
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
    "orientation": "validation images are turned or mirrored: train with quarter turns or flips",
    "overfitting": "overfitting (fit report): regularize and augment more",
    "underfitting": "underfitting (fit report): train longer, raise the learning rate or use more capacity",
}
AUGMENTED_EPOCHS = 2  # an added augmentation trains this many times the parent's epochs (issue 18: 8 -> 16)
MAX_INPUT_GROWTH = 2.0  # a fix for small objects trains at up to this many times the input side (4x the compute)
MIN_INPUT_GROWTH = 1.25  # ... and keeps the side when it would grow by less
SIZE_STEP = 32  # input sides are multiples of this


@dataclass
class Recommendation:
    group: str  # scale, rotation, colour, blur, noise, position, flip, regularization
    title: str
    score: float  # the strongest evidence behind it, share of the headroom (see honed.analyze.ranking)
    policy: str = ""  # augmentation fragment to add, e.g. "rotate:45@0.8"; "" when not an augmentation
    reason: str = ""  # why this augmentation for these images, in words ("" when the title says it all)
    regularization: dict[str, float] = field(default_factory=dict)  # drop_rate, weight_decay to set
    evidence: dict = field(default_factory=dict)
    training: dict[str, float] = field(default_factory=dict)  # epochs, lr to set (the budget a fix needs)

    def to_dict(self) -> dict:
        return asdict(self)


def recommend(factors: Sequence[FactorScore], *, gap: dict, drop_rate: float, weight_decay: float,
              sizes: ImageSizes | None = None, shifts: Sequence = (), fit: dict | None = None, epochs: int = 0,
              lr: float = 0.0, chance: float = 1.0, quality: dict | None = None,
              input_size: int = 0) -> list[Recommendation]:
    """Significant weaknesses grouped by remedy, strongest first; ``sizes`` (the run's original images)
    chooses the augmentation of a regularization recommendation and, with ``input_size`` (the side the model
    sees, 0 when it cannot take larger inputs), the input size of a fix for small objects. ``shifts``
    (ShiftScore, best first) and the fit report's dict ``fit`` join the same list; ``epochs`` and ``lr`` are
    the run's, which a fix scales; ``quality`` (split -> flag -> share, from
    ``honed.data.quality.split_quality``) adds blur augmentation for a blur-heavy validation set."""
    by_group: dict[str, Recommendation] = {}
    for group in dict.fromkeys(f.group for f in factors):
        members = [f for f in factors if f.group == group and f.significant and not f.shift]
        if members:
            top = max(members, key=lambda f: f.score)
            by_group[group] = Recommendation(group, TITLES[group], top.score, top.policy,
                                             evidence={"factors": [_factor_evidence(f) for f in members]})
    budget = {"epochs": float(AUGMENTED_EPOCHS * epochs)} if epochs else {}
    for shift in _best_shifts(shifts):
        score = max([shift.score] + [f.score for f in factors if f.shift == shift.name])  # the factor it names
        if shift.group in by_group and by_group[shift.group].score >= score:
            # the group's score stands, the measured shift's policy replaces the sensitivity's: the factor may be
            # a side effect (a darkening lowers contrast too, and contrast jitter does not reach a 4x darkening)
            by_group[shift.group].evidence["shift"] = shift.to_dict()
            by_group[shift.group].policy = shift.policy
            continue
        by_group[shift.group] = Recommendation(shift.group, TITLES[shift.group], score, shift.policy,
                                               shift_reason(shift), evidence={"shift": shift.to_dict()},
                                               training=dict(budget))
    for rec in by_group.values():  # every added augmentation needs the epochs to pay for it
        if rec.policy and not rec.training:
            rec.training = dict(budget)
    if "scale" in by_group:
        _with_detail(by_group["scale"], _objects(by_group["scale"]), input_size, sizes)
    out = list(by_group.values())
    explained = max([f.score for f in factors] + [s.score for s in shifts if s.significant], default=0.0)
    unexplained = gap["relative_gap"] - explained
    verdict = (fit or {}).get("verdict", "")
    if verdict == "underfitting":
        out.append(_against_underfitting(gap, fit, chance=chance, epochs=epochs, lr=lr, drop_rate=drop_rate))
    elif unexplained >= MIN_SCORE or verdict == "overfitting":
        policy, reason = more_augmentation(sizes)
        group = "overfitting" if verdict == "overfitting" else "regularization"
        out.append(Recommendation(
            group, TITLES[group], float(min(max(unexplained, MIN_SCORE), 1.0)), policy, reason,
            {"drop_rate": round(min(max(drop_rate + 0.2, 0.2), 0.5), 2),
             "weight_decay": max(weight_decay * 5, 0.05)},
            evidence={"gap": gap, "unexplained_share": float(unexplained), "fit": fit or {},
                      "image_sizes": sizes.to_dict() if sizes else {}}, training=dict(budget)))
    for blur in blur_heavy_validation(quality, [r.group for r in out]):  # every augmentation needs its epochs
        blur.training = dict(budget)
        out.append(blur)
    return sorted(out, key=_rank)


def input_size_for_small_objects(objects: float, input_size: int, sizes: ImageSizes | None) -> int:
    """The input side at which objects ``objects`` times their training size cover as many pixels as they did,
    as far as the originals hold the detail (their median shorter side: upscaling adds none) and at most
    MAX_INPUT_GROWTH times the run's side; 0 when that grows the side by less than MIN_INPUT_GROWTH.

    Scale augmentation teaches a model small objects; it cannot give them back the pixels a small input took
    away. Seen on ants and bees photos with the objects shrunk to 0.4x in the validation images (EfficientNet-Lite0
    at 112 px): scale augmentation continued 5 epochs won back 30% of the loss at 112 px, 97% at 224 px."""
    if not input_size or sizes is None or not 0 < objects < 1:
        return 0
    side = SIZE_STEP * math.floor(min(input_size / objects, MAX_INPUT_GROWTH * input_size, sizes.median_side)
                                  / SIZE_STEP)
    return int(side) if side >= MIN_INPUT_GROWTH * input_size else 0


def _objects(rec: Recommendation) -> float:
    """How large the validation objects are against the training ones (1: as large) by the scale evidence: the
    measured shift's strength, else the size factor's matched strength."""
    shift = rec.evidence.get("shift", {})
    if shift.get("strength"):
        return float(shift["strength"])
    matched = [f["matched_strength"] for f in rec.evidence.get("factors", []) if f.get("matched_strength")]
    return float(min(matched, default=1.0))


def _with_detail(rec: Recommendation, objects: float, input_size: int, sizes: ImageSizes | None) -> None:
    """Raise the input size of a fix for small objects where the originals hold the detail (see
    input_size_for_small_objects); the reason says so with the figures."""
    side = input_size_for_small_objects(objects, input_size, sizes)
    if not side:
        return
    rec.training["image_size"] = float(side)
    why = (f"objects about {objects:.2g}x as large as in training; the originals (median side "
           f"{sizes.median_side:.0f} px) hold detail the {input_size}-px input discards: train at {side} px "
           f"({(side / input_size) ** 2:.1f}x the compute)")
    rec.reason = f"{rec.reason}; {why}" if rec.reason else why


def shift_reason(shift) -> str:
    """How the shift was measured, in words, with its figures."""
    head = f"shift between the splits, {shift.name}: "
    if shift.measured_by == "transformed back":
        return (f"{head}transforming the validation images back wins {shift.share_of_gap:.0%} of the train/validation "
                f"gap ({shift.val_failure:.3f} -> {shift.back_failure:.3f} failure)")
    return (f"{head}training images made so match {shift.statistics_explained:.0%} of the difference in image "
            f"statistics and fail as the validation ones do ({shift.train_failure:.3f} -> "
            f"{shift.simulated_failure:.3f} failure, validation {shift.val_failure:.3f}); transforming the "
            f"validation images back restores little of the lost detail ({shift.back_failure:.3f})")


def _rank(rec: Recommendation) -> tuple[bool, float]:
    """A shift that explains most of the gap first; then by score, a measured shift's counted MEASURED_WEIGHT
    times: transforming the validation images back won accuracy back, evidence that the splits differ, where a
    model's sensitivity to a perturbation only says what would hurt it.

    Seen on quarter-turned CIFAR validation images: sensitivity to small rotations (0.29) outranked the quarter
    turn that turning the images back proved (0.19, 47% of the gap); improve applied small rotations and lost
    ground, where quarter turns recovered 86% of the loss. On shapes rotated by any angle, flipping back wins
    0.21 (a turned triangle looks flipped) against the rotation sensitivity's 0.55: rotation stays first."""
    measured = rec.evidence.get("shift", {}).get("significant", False) and rec.group != "underfitting"
    return not _explains_most(rec), -rec.score * (MEASURED_WEIGHT if measured else 1.0)


def _explains_most(rec: Recommendation) -> bool:
    """A shift that transforming the validation images back shows to explain most of the gap comes first, before
    advice scored on another scale (the fit report's)."""
    return rec.evidence.get("shift", {}).get("share_of_gap", 0.0) >= NAMES_SHIFT and rec.group != "underfitting"


def _best_shifts(shifts: Sequence) -> list:
    """The strongest significant shift of each group."""
    best: dict[str, object] = {}
    for shift in shifts:
        if shift.significant and (shift.group not in best or shift.score > best[shift.group].score):
            best[shift.group] = shift
    return list(best.values())


def _against_underfitting(gap: dict, fit: dict, *, chance: float, epochs: int, lr: float,
                          drop_rate: float) -> Recommendation:
    """Train longer (twice the epochs), a higher learning rate when the loss was still falling, less dropout:
    scored by how far the training images themselves are from being fitted."""
    training = {"epochs": float(2 * epochs)} if epochs else {}
    if lr and any("still falling" in line for line in fit.get("evidence", [])):
        training["lr"] = 2 * lr
    score = float(min(max(gap.get("train_failure", 0.0) / max(chance, 1e-6), MIN_SCORE), 1.0))
    return Recommendation("underfitting", TITLES["underfitting"], score,
                          reason="; ".join(fit.get("evidence", [])),
                          regularization={"drop_rate": 0.0} if drop_rate else {},
                          evidence={"gap": gap, "fit": fit, "suggestions": fit.get("suggestions", [])},
                          training=training)


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
    actionable = [r for r in recommendations if r.policy or r.regularization or r.training]
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
