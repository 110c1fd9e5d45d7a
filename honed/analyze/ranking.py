"""Which factor explains the validation failures: sensitivity x shift, plus where the errors concentrate.

A model trained on narrow data is sensitive to many factors at once, so the probe drops alone cannot say
which one the validation failures come from. Each factor is scored from three measurements, all expressed
as a share of the *headroom* (chance failure minus the model's failure on training images):

(a) sensitivity ``D(s)``: the probe's failure increase on *training* images (a sample of the train split,
    which the model knows) at each strength ``s``; per class for classification (shrunk towards the overall
    curve), because a rotated circle is still a circle.
(b) shift, expressed in probe strength: every image gets a typicality value ``t`` along the factor (the
    measurement oriented so that larger is more unusual: smaller objects, blurrier, farther from the training
    median brightness, turned by more degrees away from its nearest training look-alikes in gradient-direction
    or hue histograms, ...). The probe at strength ``s`` moves the training images' median ``t`` along a
    calibration curve ``T(s)``; the strength ``s*`` where ``T`` reaches the validation median is the shift in
    the unit the sensitivity was measured in. A side effect (small objects also look a little less contrasted)
    thus counts only as much as the matching mild contrast change would hurt.
(c) error concentration: the failure rate in the quarter of validation images most extreme along the factor
    (taken within each class) minus the rest's; the lower end of its bootstrap interval counts.

expected drop ``e = sum_c share_c * D_c(s*_c)`` (per class c, with its own calibration; one curve for
regression), clipped to [0, 1]: the loss this factor's shift alone predicts. A shift of the whole validation
set shows in ``e``; a shift of a part of it (too small to move the median) shows in the concentration ``c``.
**score = 1 - (1 - e)(1 - c)**, high when either holds. A factor is a weakness when ``score >= MIN_SCORE`` and
its probe drop on training images (at the matched strength) or its concentration is significant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from torch import Tensor

from honed.analyze.factors import Factor
from honed.analyze.image_measures import circular_offset, measure_images
from honed.analyze.sensitivity import (
    ProbeRun,
    condition_seed,
    difference_interval,
    paired_drop,
)

MIN_SCORE = 0.1  # a weakness must cost at least a tenth of the headroom (or concentrate that much error)
SLICE_SHARE = 0.25  # the most extreme quarter of validation images forms a factor's slice
MIN_SLICE = 5  # fewer images than this in a slice: no concentration measured
EXAMPLES = 6  # image paths kept as examples per slice
NAMES_SHIFT = 0.5  # a shift undone on validation images that wins back this share of the gap names its factor
SHRINK = 10  # a class's sensitivity curve counts as this many images of the overall curve (few images: noisy)


@dataclass
class FactorScore:
    """A factor's evidence and its combined score (see the module docstring)."""

    name: str
    group: str
    slice: str
    score: float
    expected_drop: float  # share of the headroom the measured shift should cost, from (a) and (b)
    concentration: float  # lower bound of the slice's excess failure, share of the headroom (c)
    sensitivity: list[float]  # relative drop on training images at each probe strength (a)
    strengths: list[float]
    matched_strength: float  # probe parameter matching the 75th percentile of validation images (b)
    shift_auc: float  # P(validation image more unusual than a training image), 0.5: no shift
    train_median: float  # of the typicality value t
    val_median: float
    slice_failure: float  # failure rate in the factor's slice of validation images
    rest_failure: float
    slice_ci: list[float]  # bootstrap interval of slice - rest
    slice_size: int
    significant: bool
    policy: str  # augmentation fragment for the matched strength
    examples: list[str] = field(default_factory=list)  # failing validation images in the slice
    shift: str = ""  # the shift between the splits that this factor names (honed.analyze.shift), "" when none
    shift_score: float = 0.0  # failure won back by transforming validation images back, share of the headroom

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evidence:
    """What :func:`score_factor` needs besides the factor: the reference and validation sets, measured."""

    reference: ProbeRun  # probes on training images, with measurements
    reference_images: Tensor  # uint8 [N, 3, S, S], decoded as in training
    val_images: Tensor
    val_failures: np.ndarray
    val_paths: Sequence[str]
    headroom: float  # chance failure - clean failure on the training images (> 0)
    seed: int
    val_groups: np.ndarray | None = None  # class of each image (classification): sensitivity per class,
    reference_groups: np.ndarray | None = None  # slices within classes


def score_factor(factor: Factor, evidence: Evidence) -> FactorScore:
    """Score one factor from its probe curve, its calibrated shift and its error concentration."""
    ref = evidence.reference
    sensitivity = [float(np.clip((ref.failures[factor.name, k] - ref.clean).mean() / evidence.headroom, 0, 1))
                   for k in range(len(factor.strengths))]
    if factor.measure is None:
        return _unmeasured(factor, sensitivity)
    t_ref, t_val, t_probed = _typicality(factor, evidence)
    overall = np.array([0.0, *sensitivity])
    expected = _expected_drop(factor, evidence, t_ref, t_val, t_probed, overall)
    inside = extreme_slice(t_val, evidence.val_groups)
    diff, low, high = difference_interval(evidence.val_failures[inside], evidence.val_failures[~inside],
                                          seed=condition_seed(evidence.seed, factor.name, 99))
    measurable = min(inside.sum(), (~inside).sum()) >= MIN_SLICE
    concentration = float(np.clip(low / evidence.headroom, 0, 1)) if measurable else 0.0
    score = 1 - (1 - expected) * (1 - concentration)
    envelope = np.maximum.accumulate(_medians(t_ref, t_probed, np.ones(len(t_ref), bool)))
    matched_p = _position(float(np.quantile(t_val, 0.75)), envelope) if len(t_val) else 0.0
    matched = float(_interp(np.array(factor.parameters), np.array([matched_p]))[0])
    probe_significant = _probe_significant(factor, ref, matched_p, evidence.seed)
    order = np.argsort(-t_val, kind="stable")
    failing = [evidence.val_paths[i] for i in order if inside[i] and evidence.val_failures[i] > 0]
    return FactorScore(
        name=factor.name, group=factor.group, slice=factor.slice, score=float(score), expected_drop=expected,
        concentration=concentration, sensitivity=sensitivity, strengths=list(factor.strengths),
        matched_strength=matched, shift_auc=_auc(t_val, t_ref), train_median=float(np.median(t_ref)),
        val_median=float(np.median(t_val)), slice_failure=float(evidence.val_failures[inside].mean()),
        rest_failure=float(evidence.val_failures[~inside].mean()) if (~inside).any() else float("nan"),
        slice_ci=[float(low), float(high)], slice_size=int(inside.sum()),
        significant=bool(score >= MIN_SCORE and (concentration > 0 or probe_significant)),
        policy=factor.recommend(matched if matched_p > 0 else factor.strengths[0]), examples=failing[:EXAMPLES])


def _expected_drop(factor: Factor, evidence: Evidence, t_ref: np.ndarray, t_val: np.ndarray,
                   t_probed: list[np.ndarray], overall: np.ndarray) -> float:
    """Sensitivity read at the strength that moves the training images' median onto the validation median,
    class by class (weighted by the class's share of validation images) when classes are known."""
    if evidence.val_groups is None or evidence.reference_groups is None:
        envelope = np.maximum.accumulate(_medians(t_ref, t_probed, np.ones(len(t_ref), bool)))
        return float(np.clip(_interp(overall, np.array([_position(float(np.median(t_val)), envelope)]))[0], 0, 1))
    total = 0.0
    for group in np.unique(evidence.val_groups):
        in_val, in_ref = evidence.val_groups == group, evidence.reference_groups == group
        if in_ref.sum() < MIN_SLICE:  # too few training images of this class to calibrate on: use them all
            in_ref = np.ones(len(t_ref), bool)
        envelope = np.maximum.accumulate(_medians(t_ref, t_probed, in_ref))
        position = _position(float(np.median(t_val[in_val])), envelope)
        total += in_val.mean() * _interp(_class_curve(factor, evidence, in_ref, overall), np.array([position]))[0]
    return float(np.clip(total, 0, 1))


def _medians(t_ref: np.ndarray, t_probed: list[np.ndarray], members: np.ndarray) -> np.ndarray:
    """The calibration curve: median typicality of (some) training images untouched and at each strength."""
    return np.array([float(np.median(t[members])) for t in (t_ref, *t_probed)])


def _class_curve(factor: Factor, evidence: Evidence, members: np.ndarray, overall: np.ndarray) -> np.ndarray:
    """The sensitivity curve of some training images (one class), shrunk towards the overall curve: a rotated
    circle is still a circle, so rotation explains the failures of squares, not of circles."""
    ref = evidence.reference
    raw = np.array([0.0, *[max(0.0, float((ref.failures[factor.name, k][members] - ref.clean[members]).mean())
                                     / evidence.headroom) for k in range(len(factor.strengths))]])
    n = int(members.sum())
    return (n * raw + SHRINK * overall) / (n + SHRINK)


def rank_factors(factors: Sequence[Factor], evidence: Evidence) -> list[FactorScore]:
    """Every factor scored, best explanation first (ties keep the canonical factor order)."""
    scores = [score_factor(f, evidence) for f in factors]
    return sorted(scores, key=lambda s: -s.score)


def with_shifts(ranked: Sequence[FactorScore], shifts) -> list[FactorScore]:
    """The factor ranking with the detected shifts (:mod:`honed.analyze.shift`) folded in: a factor whose shift
    is significant scores at least what transforming the validation images back wins, and is a weakness."""
    out = []
    for factor in ranked:
        found = [s for s in shifts if s.factor == factor.name and s.significant]
        if found:
            best = max(found, key=lambda s: s.score)
            factor.shift_score = best.score
            if best.score > factor.score or best.share_of_gap >= NAMES_SHIFT:  # the shift names the weakness
                factor.shift, factor.policy, factor.significant = best.name, best.policy, True
                factor.score = max(factor.score, best.score)
        out.append(factor)
    return sorted(out, key=lambda s: -s.score)


def extreme_slice(t: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The SLICE_SHARE most extreme images (largest ``t``), taken within each group when groups are given, so
    that a factor correlated with the class (triangles are smaller than squares) does not pass for a weakness."""
    inside = np.zeros(len(t), bool)
    groups = np.zeros(len(t), int) if groups is None else groups
    for group in np.unique(groups):
        members = np.nonzero(groups == group)[0]
        take = max(1, int(round(SLICE_SHARE * len(members))))
        inside[members[np.argsort(-t[members], kind="stable")[:take]]] = True
    return inside


def _typicality(factor: Factor, evidence: Evidence) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Oriented typicality of the training images untouched, of the validation images, and of the training
    images at each probe strength."""
    ref_measure = measure_images(factor.measure, evidence.reference_images)
    val_measure = measure_images(factor.measure, evidence.val_images)
    probed = [evidence.reference.measured[factor.name, k] for k in range(len(factor.strengths))]
    if factor.histogram:
        t_ref = circular_offset(ref_measure, ref_measure, exclude_self=True)
        t_val = circular_offset(val_measure, ref_measure)
        t_probed = [circular_offset(m, ref_measure, exclude_self=True) for m in probed]
    else:
        centre = ref_measure.median()
        orient = _orienter(factor.direction, centre)
        t_ref, t_val, t_probed = orient(ref_measure), orient(val_measure), [orient(m) for m in probed]
    return t_ref.double().numpy(), t_val.double().numpy(), [t.double().numpy() for t in t_probed]


def _orienter(direction: int, centre: Tensor):
    if direction > 0:
        return lambda m: m
    if direction < 0:
        return lambda m: -m
    return lambda m: (m - centre).abs()


def _position(t: float, envelope: np.ndarray) -> float:
    """Where ``t`` falls on the non-decreasing calibration curve, in condition units (0 = untouched)."""
    if t <= envelope[0]:
        return 0.0
    above = np.nonzero(envelope >= t)[0]
    if len(above) == 0:
        return float(np.argmax(envelope))  # beyond the strongest probe: the first condition reaching the top
    k = int(above[0])
    span = envelope[k] - envelope[k - 1]
    return float(k - 1 + (t - envelope[k - 1]) / span) if span > 0 else float(k)


def _interp(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.interp(positions, np.arange(len(values)), values)


def _probe_significant(factor: Factor, ref: ProbeRun, position: float, seed: int) -> bool:
    """Is the training-image probe drop significant at the first strength at or beyond ``position``?"""
    index = min(max(int(np.ceil(position)) - 1, 0), len(factor.strengths) - 1)
    _, low, _ = paired_drop(ref.clean, ref.failures[factor.name, index], seed=condition_seed(seed, factor.name, index))
    return bool(low > 0)


def _auc(values: np.ndarray, baseline: np.ndarray) -> float:
    """P(value > baseline value) + half the ties (Mann-Whitney), via ranks."""
    if len(values) == 0 or len(baseline) == 0:
        return float("nan")
    both = np.concatenate([values, baseline])
    ranks = _average_ranks(both)
    n = len(values)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * len(baseline)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


def _unmeasured(factor: Factor, sensitivity: list[float]) -> FactorScore:
    """A factor with no measurement (flip): its sensitivity is reported, it explains nothing by itself."""
    nan = float("nan")
    return FactorScore(
        name=factor.name, group=factor.group, slice=factor.slice, score=0.0, expected_drop=0.0, concentration=0.0,
        sensitivity=sensitivity, strengths=list(factor.strengths), matched_strength=factor.identity,
        shift_auc=nan, train_median=nan, val_median=nan, slice_failure=nan, rest_failure=nan,
        slice_ci=[nan, nan], slice_size=0, significant=False, policy=factor.recommend(factor.strengths[-1]))
