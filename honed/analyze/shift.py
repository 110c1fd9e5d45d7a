"""Shift detection: which change between training and validation images explains the validation failures.

Sensitivity alone cannot say it (a model trained on narrow data is sensitive to everything), and a quarter
turn moves no median of a per-image measurement. So each candidate shift (quarter turns, flips, smaller
objects, darker / brighter / flatter / greyer images, blur, noise) is tested two ways:

* **transform back**: the candidate's inverse is applied to the validation images (turn them back, zoom in,
  brighten, stretch the contrast, sharpen, smooth). The share of the lost accuracy that comes back, with a
  paired bootstrap interval over images, is what the shift explains. Undoing a shift that is not there
  recovers nothing (and usually costs), so this is specific as well as direct;
* **simulate**: the candidate applied to *training* images. Where the inverse cannot work (a shrunk 32 px
  object has lost the pixels that zooming back in would need), the shift is still named when the simulation
  passes two tests: it moves the training images' statistics most of the way to the validation ones
  (:func:`statistics_explained`; specific, since a quarter turn or a contrast change leaves object size
  alone), and it makes training images fail as validation ones do (the model's failure on them rises by a
  share of the gap, with a paired bootstrap interval). Seen on CIFAR objects shrunk to 0.6x and 0.4x: zooming
  back in won 3% of the gap, the simulated shrink closed 68-81% of the statistical distance (lower contrast,
  a side effect: 39%) and reproduced the whole gap.

Photometric strengths are not guessed: they come from image statistics compared between the splits
(:func:`split_statistics`: brightness, contrast, saturation, sharpness as Laplacian variance, noise, object
size, and the balance of horizontal and vertical edges, which a quarter turn swaps). A blur's sigma is the one
that makes training images as fine-grained as the validation ones (:func:`matched_blur`). Geometric
candidates are tried at a few fixed strengths and the best inverse counts.

score = recovered failure / headroom (the unit of :mod:`honed.analyze.ranking`, so both rank in one list).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from honed.analyze import image_measures as measures
from honed.analyze import factors as ops
from honed.analyze.sensitivity import BatchPredictor, failures, paired_drop, predict_all, to_uint8

MIN_SHARE = 0.25  # a shift must win back at least this share of the train/validation gap to be named
STAT_SHARE = 0.5  # a simulated shift must explain this share of the statistical distance between the splits,
STAT_MARGIN = 0.2  # ... within this of the candidate that explains most (a side effect also closes some of it),
NULL_RATIO = 3.0  # ... and the splits must differ this many times more than two halves of the training images
MIN_STAT_CHANGE = 0.05  # relative change of a statistic's median below which no photometric shift is tried
EXAMPLES = 8  # worst validation images shown with their transformed-back versions
BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)  # pixels at the analysed size, searched
BLUR_SAMPLE = 128  # training images blurred per sigma in that search
Batch = Callable[[Tensor], Tensor]  # float [0, 1] images -> float images


@dataclass(frozen=True)
class Candidate:
    """A hypothesised shift: how to make training images look like it, how to undo it, what covers it."""

    name: str  # in words, e.g. "turned a quarter clockwise"
    factor: str  # the analysis factor it belongs to (honed.analyze.factors)
    group: str  # the recommendation group (honed.analyze.recommend.TITLES)
    forward: Batch
    inverse: Batch
    policy: str  # the augmentation that covers it
    strength: float = 0.0  # the shift in its factor's unit (0.5: objects half as large; a blur's sigma), 0: none


@dataclass
class ShiftScore:
    """One candidate's evidence; ``score`` is recovered failure as a share of the headroom."""

    name: str
    factor: str
    group: str
    policy: str
    score: float
    share_of_gap: float  # recovered / (validation failure - training failure)
    recovered: float  # mean per-image failure removed by transforming validation images back
    ci: list[float]  # 95% bootstrap interval of what share_of_gap was measured from (see measured_by)
    val_failure: float
    back_failure: float  # validation failure after the inverse
    train_failure: float
    simulated_failure: float  # training images transformed to resemble the shift
    significant: bool
    statistics_explained: float = 0.0  # share of the splits' statistical distance the simulation closes
    measured_by: str = "transformed back"  # or "simulated on training images": how share_of_gap was measured
    strength: float = 0.0  # the candidate's strength in its factor's unit (0: not a graded shift)
    examples: list[int] = field(default_factory=list)  # validation indices: worst that the inverse fixes

    def to_dict(self) -> dict:
        return asdict(self)


# --- transformations (float batches in [0, 1]) ----------------------------------------------------------------


def _turn(k: int) -> Batch:
    return lambda x: torch.rot90(x, k, dims=(-2, -1)) if x.shape[-1] == x.shape[-2] else x


def _zoom_in(factor: float) -> Batch:
    """Crop the central ``factor`` of the side and resize it back: the inverse of shrinking by ``factor``."""
    def apply(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * factor)), max(1, round(w * factor))
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = x[..., top:top + ch, left:left + cw]
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False).clamp_(0, 1)
    return apply


def _shrink(factor: float) -> Batch:
    return lambda x: ops.shrink(x, factor, torch.Generator().manual_seed(0))


def _gain(gain: float) -> Batch:
    return lambda x: (x * gain).clamp_(0, 1)


def _contrast(ratio: float) -> Batch:
    """Scale each image's deviation from its mean luma by ``ratio`` (< 1 flattens, > 1 stretches)."""
    def apply(x: Tensor) -> Tensor:
        mean = measures.luma(x).flatten(1).mean(1).view(-1, 1, 1, 1)
        return (mean + (x - mean) * ratio).clamp_(0, 1)
    return apply


def _saturate(ratio: float) -> Batch:
    def apply(x: Tensor) -> Tensor:
        grey = measures.luma(x)[:, None]
        return (grey + (x - grey) * ratio).clamp_(0, 1)
    return apply


def _blur(sigma: float) -> Batch:
    return lambda x: ops.blur(x, sigma, torch.Generator())


def _sharpen(sigma: float, amount: float = 1.5) -> Batch:
    """Unsharp mask: the usual (partial) inverse of a blur."""
    return lambda x: (x + amount * (x - ops.blur(x, sigma, torch.Generator()))).clamp_(0, 1)


def _noise(sigma: float) -> Batch:
    return lambda x: ops.add_noise(x, sigma, torch.Generator().manual_seed(0))


# --- statistics compared between the splits --------------------------------------------------------------------


def edge_balance(x: Tensor) -> Tensor:
    """log(vertical-edge energy / horizontal-edge energy): a quarter turn flips its sign."""
    y = measures.luma(x)
    gx = (y[..., :, 1:] - y[..., :, :-1]).pow(2).flatten(1).mean(1)
    gy = (y[..., 1:, :] - y[..., :-1, :]).pow(2).flatten(1).mean(1)
    return torch.log((gx + 1e-6) / (gy + 1e-6))


STATISTICS: dict[str, Callable[[Tensor], Tensor]] = {
    "brightness": measures.brightness, "contrast": measures.contrast, "saturation": measures.saturation,
    "sharpness": measures.sharpness, "noise": measures.noise_level, "object_size": measures.object_size,
    "edge_balance": edge_balance,
}


def split_statistics(train_images: Tensor, val_images: Tensor) -> dict[str, dict]:
    """Median of each statistic on both splits, P(validation value > training value) (0.5: no shift), the
    training images' interquartile range (the unit of :func:`statistics_distance`), and the medians of two
    halves of the training images (how far two samples of one distribution lie apart). Where the validation
    images are less sharp, the sharpness row also holds the blur that matches them (``matched_sigma``)."""
    from honed.analyze.ranking import _auc

    out = {}
    for name, measure in STATISTICS.items():
        a = measures.measure_images(measure, train_images).double().numpy()
        b = measures.measure_images(measure, val_images).double().numpy()
        low, high = np.quantile(a, [0.25, 0.75]) if len(a) else (0.0, 0.0)
        out[name] = {"train_median": float(np.median(a)), "val_median": float(np.median(b)), "auc": _auc(b, a),
                     "train_iqr": float(high - low), "halves": [float(np.median(a[0::2])), float(np.median(a[1::2]))]}
    if len(train_images) and len(val_images) and _ratio(out, "sharpness") < 1 - MIN_STAT_CHANGE:
        out["sharpness"]["matched_sigma"] = matched_blur(train_images, val_images)
    return out


def matched_blur(train_images: Tensor, val_images: Tensor) -> float:
    """The Gaussian sigma (pixels) that makes the training images' median fineness (detail for the contrast,
    :func:`honed.analyze.image_measures.fineness`) that of the validation images: searched over BLUR_SIGMAS
    on a sample, interpolated on log scales. The Laplacian ratio that tells *whether* the images are blurred
    cannot tell *how much*: on ants and bees photos blurred by sigma 2.8 and 5.6 px it read 0.035 and 0.032,
    where fineness read 0.147 and 0.100 (sigma 2.4 and 4.6 by this search)."""
    sample = train_images[torch.linspace(0, len(train_images) - 1, min(BLUR_SAMPLE, len(train_images))).long()]
    target = float(measures.measure_images(measures.fineness, val_images).median())
    levels = [float(measures.measure_images(measures.fineness, sample).median())]
    for sigma in BLUR_SIGMAS:
        levels.append(float(measures.measure_images(measures.fineness, _transformed(sample, _blur(sigma))).median()))
        if levels[-1] <= target:
            break
    if levels[-1] > target:  # blurrier than the search reaches
        return BLUR_SIGMAS[-1]
    if len(levels) == 2:  # less blurred than the first step
        return BLUR_SIGMAS[0]
    (s0, s1), (f0, f1) = BLUR_SIGMAS[len(levels) - 3:len(levels) - 1], levels[-2:]  # levels[i]: BLUR_SIGMAS[i-1]
    t = (np.log(f0) - np.log(target)) / max(np.log(f0) - np.log(f1), 1e-9)
    return float(np.exp(np.log(s0) + t * (np.log(s1) - np.log(s0))))


def statistics_distance(medians: dict[str, float], stats: dict) -> float:
    """Summed distance of ``medians`` from the validation medians, each in training interquartile ranges."""
    return float(sum(abs(value - stats[name]["val_median"]) / max(stats[name]["train_iqr"], 1e-6)
                     for name, value in medians.items()))


def _apart(stats: dict) -> float:
    """How far the training statistics lie from the validation ones."""
    return statistics_distance({name: row["train_median"] for name, row in stats.items()}, stats)


def splits_differ(stats: dict) -> bool:
    """The validation statistics lie NULL_RATIO times farther from the training ones than two halves of the
    training images lie from each other."""
    null = sum(abs(row["halves"][0] - row["halves"][1]) / max(row["train_iqr"], 1e-6) for row in stats.values())
    return _apart(stats) > NULL_RATIO * max(null, 1e-6)


def statistics_explained(transformed: Tensor, stats: dict) -> float:
    """Share of the statistical distance between the splits that transforming the training images closes
    (1: they now look like the validation images; 0 or less: no closer)."""
    medians = {name: float(measures.measure_images(measure, transformed).double().median())
               for name, measure in STATISTICS.items()}
    return 1.0 - statistics_distance(medians, stats) / max(_apart(stats), 1e-6)


def _ratio(stats: dict, name: str) -> float:
    row = stats[name]
    return row["val_median"] / row["train_median"] if row["train_median"] > 1e-6 else 1.0


def candidates(stats: dict) -> list[Candidate]:
    """Every shift worth testing: the geometric ones always, the photometric ones where the statistics moved,
    at the strength they moved by."""
    out = [Candidate("turned a quarter clockwise", "rotation", "orientation", _turn(-1), _turn(1), "quarter_turn@0.5"),
           Candidate("turned a quarter anticlockwise", "rotation", "orientation", _turn(1), _turn(-1),
                     "quarter_turn@0.5"),
           Candidate("upside down", "rotation", "orientation", _turn(2), _turn(2), "quarter_turn@0.5"),
           Candidate("mirrored top to bottom", "flip", "orientation", lambda x: x.flip(-2), lambda x: x.flip(-2),
                     "vflip@0.5"),
           Candidate("mirrored left to right", "flip", "flip", lambda x: x.flip(-1), lambda x: x.flip(-1), "hflip")]
    for factor in (0.75, 0.5):
        out.append(Candidate(f"objects {factor:g}x smaller", "size", "scale", _shrink(factor), _zoom_in(factor),
                             ops._scale_policy(factor), factor))
    brightness = _ratio(stats, "brightness")
    if abs(1 - brightness) >= MIN_STAT_CHANGE:
        word = "darker" if brightness < 1 else "brighter"
        out.append(Candidate(f"{word} ({brightness:.2f}x brightness)", "brightness", "colour", _gain(brightness),
                             _gain(1 / brightness), ops.brightness_policy(brightness)))
    contrast = _ratio(stats, "contrast")
    if contrast < 1 - MIN_STAT_CHANGE:
        out.append(Candidate(f"lower contrast ({contrast:.2f}x)", "contrast", "colour", _contrast(contrast),
                             _contrast(1 / contrast), ops._colour_policy(1 - contrast)))
    saturation = _ratio(stats, "saturation")
    if saturation < 1 - MIN_STAT_CHANGE:
        out.append(Candidate(f"washed-out colours ({saturation:.2f}x saturation)", "saturation", "colour",
                             _saturate(saturation), _saturate(1 / max(saturation, 0.1)),
                             ops._colour_policy(1 - saturation)))
    sharpness = _ratio(stats, "sharpness")
    if sharpness < 1 - MIN_STAT_CHANGE:
        sigma = stats["sharpness"].get("matched_sigma", 2.0 if sharpness < 0.3 else 1.0)  # older analyses: a guess
        out.append(Candidate(f"blurred (sharpness {sharpness:.2f}x, about sigma {sigma:.2g} px)", "blur", "blur",
                             _blur(sigma), _sharpen(sigma), ops.blur_policy(sigma), sigma))
    noise = stats["noise"]["val_median"] - stats["noise"]["train_median"]
    if noise > 0.01:
        out.append(Candidate(f"noisier (+{noise:.3f} noise level)", "noise", "noise", _noise(noise), _blur(0.8),
                             ops._noise_policy(noise)))
    return out


# --- testing the candidates ----------------------------------------------------------------------------------------


def detect_shifts(model: BatchPredictor, *, train_images: Tensor, train_targets: np.ndarray, val_images: Tensor,
                  val_targets: np.ndarray, task: str, headroom: float, seed: int,
                  train_outputs: np.ndarray | None = None, val_outputs: np.ndarray | None = None,
                  ) -> tuple[list[ShiftScore], dict]:
    """Score every candidate shift, best first, and return the split statistics they were chosen from."""
    stats = split_statistics(train_images, val_images)
    train_outputs = predict_all(model, train_images) if train_outputs is None else train_outputs
    val_outputs = predict_all(model, val_images) if val_outputs is None else val_outputs
    train_fail = failures(train_outputs, train_targets, task)
    val_fail = failures(val_outputs, val_targets, task)
    gap = max(float(val_fail.mean() - train_fail.mean()), 1e-6)
    differ = splits_differ(stats)
    failing = np.nonzero(val_fail > 0)[0]
    worst_failing = failing[np.argsort(-val_fail[failing] - _loss(val_outputs[failing], val_targets[failing], task),
                                       kind="stable")][:EXAMPLES]
    scores, tested = [], candidates(stats)
    explained = [statistics_explained(_transformed(train_images, c.forward), stats) if differ else 0.0
                 for c in tested]  # first, for the closest match (transformed again below: cheap, and no copies)
    closest = max(explained, default=0.0)
    for index, candidate in enumerate(tested):
        back_fail = failures(predict_all(model, _transformed(val_images, candidate.inverse)), val_targets, task)
        simulated = failures(predict_all(model, _transformed(train_images, candidate.forward)), train_targets, task)
        recovered, low, high = paired_drop(back_fail, val_fail, seed=seed + index)  # mean(val - back)
        share = recovered / gap
        fixed = np.nonzero((val_fail > 0) & (back_fail < val_fail))[0]
        worst = fixed[np.argsort(-val_fail[fixed] - _loss(val_outputs[fixed], val_targets[fixed], task),
                                 kind="stable")][:EXAMPLES]
        score = ShiftScore(
            name=candidate.name, factor=candidate.factor, group=candidate.group, policy=candidate.policy,
            score=float(np.clip(recovered / headroom, 0, 1)), share_of_gap=float(share), recovered=float(recovered),
            ci=[float(low), float(high)], val_failure=float(val_fail.mean()), back_failure=float(back_fail.mean()),
            train_failure=float(train_fail.mean()), simulated_failure=float(simulated.mean()),
            significant=bool(low > 0 and share >= MIN_SHARE), examples=[int(i) for i in worst],
            statistics_explained=explained[index], strength=candidate.strength)
        scores.append((score, simulated))
    undone = {score.factor for score, _ in scores if score.significant}
    for index, (score, simulated) in enumerate(scores):
        # where transforming back names a shift of this factor, no other candidate of it is named by simulation:
        # statistics cannot tell a quarter turn clockwise from one anticlockwise, turning back can. The named
        # one's share is the stronger of its two measures: an unsharp mask undoes a strong blur only in part
        if (score.factor not in undone or score.significant) and _simulated_route(
                score, train_fail, simulated, gap=gap, headroom=headroom, closest=closest, seed=seed + index):
            score.examples = score.examples or [int(i) for i in worst_failing]
    ranked = [score for score, _ in scores]
    # ties: the closer look-alike, then the one that transforming back helps more (the direction of a turn)
    return sorted(ranked, key=lambda s: (-s.score, -s.statistics_explained, -s.recovered)), stats


def _transformed(images: Tensor, transform: Batch, chunk: int = 256) -> Tensor:
    """uint8 images through a float transformation, in chunks."""
    if not len(images):
        return images
    return torch.cat([to_uint8(transform(images[i:i + chunk].float() / 255)) for i in range(0, len(images), chunk)])


def _simulated_route(score: ShiftScore, train_fail: np.ndarray, simulated: np.ndarray, *, gap: float,
                     headroom: float, closest: float, seed: int) -> bool:
    """Name a shift its inverse could not undo when the simulation makes training images look (statistics: as
    closely as the closest candidate, ``closest``, give or take STAT_MARGIN) and fail (model) like the
    validation ones; the failure it reproduces, up to the gap, is its share (and its interval the ``ci``).
    A shift already named by transforming back takes this share only where it is the larger. True when the
    simulation names the shift (or raises its share)."""
    if score.statistics_explained < max(STAT_SHARE, closest - STAT_MARGIN):
        return False
    added, low, high = paired_drop(train_fail, simulated, seed=seed)  # mean(simulated - train)
    reproduced = min(added, gap)
    if low <= 0 or reproduced / gap < max(MIN_SHARE, score.share_of_gap if score.significant else 0.0):
        return False
    score.score = float(np.clip(reproduced / headroom, 0, 1))
    score.share_of_gap, score.ci = float(reproduced / gap), [float(low), float(high)]
    score.significant, score.measured_by = True, "simulated on training images"
    return True


def _loss(outputs: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """Classification: the wrong classes' probability mass (orders the worst first); regression: zeros."""
    if outputs.ndim == 2 and targets.ndim == 1 and len(targets):
        return 1.0 - outputs[np.arange(len(targets)), targets.astype(int)]
    return np.zeros(len(targets))


def inverse_of(shift: ShiftScore, stats: dict) -> Batch:
    """The inverse transformation of a scored shift (rebuilt from the same statistics)."""
    return next(c.inverse for c in candidates(stats) if c.name == shift.name)


def best_by_group(shifts: Sequence[ShiftScore]) -> dict[str, ShiftScore]:
    """The strongest significant shift of each recommendation group."""
    out: dict[str, ShiftScore] = {}
    for shift in shifts:
        if shift.significant and (shift.group not in out or shift.score > out[shift.group].score):
            out[shift.group] = shift
    return out
