"""Image quality flags with thresholds taken from the dataset itself: blurry, too dark, too bright, odd aspect
ratio, grayscale in a colour dataset.

Each image is measured once, in ``honed data check``'s existing scan (``honed.data.audit``), on the small grey
copy that scan already makes for its perceptual hash: sharpness is the variance of the Laplacian (log10), light
the mean grey level, colour the mean spread between the RGB channels, shape log(width / height). A flag is a
robust outlier of the dataset's own distribution: beyond the median by ``K_MAD`` scaled median absolute
deviations (the modified z-score of Iglewicz and Hoaglin, 3.5), never closer than a floor, so a uniform
dataset (all CIFAR images are 32x32) flags nothing by accident. Every threshold is reported with its value.

Why not cleanvision: it decodes every image again in its own loop and would double the audit's I/O; its
thresholds are fixed scores rather than the dataset's own spread; and it cannot share the decode-error
reasons training reports. The measures here are a few lines of numpy on the copy already in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

K_MAD = 3.5  # modified z-score beyond which a value is an outlier (Iglewicz & Hoaglin)
MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data
MIN_IMAGES = 10  # fewer measured images give no distribution to judge by: no flags
GREY_SPREAD = 2.0  # mean |R-G|, |G-B|, |B-R| (of 255) under which an image is grayscale (JPEG noise stays under)
COLOUR_DATASET = 0.5  # the dataset is colour when more than this share of its images are not grayscale

# flag: (measure, side, floor): the threshold is at least ``floor`` away from the median
RULES = {
    "blurry": ("sharpness", "low", 0.5),  # log10 variance of the Laplacian: 0.5 = a factor of ~3
    "too_dark": ("brightness", "low", 40.0),  # grey levels of 255
    "too_bright": ("brightness", "high", 40.0),
    "odd_aspect": ("aspect", "both", float(np.log(1.5))),  # |log(w/h)|: at least 1.5x off the usual shape
}
TEXTS = {
    "blurry": "blurry (sharpness, log10 variance of the Laplacian, under {value:.2f}; median {median:.2f})",
    "too_dark": "too dark (mean grey level under {value:.0f} of 255; median {median:.0f})",
    "too_bright": "too bright (mean grey level over {value:.0f} of 255; median {median:.0f})",
    "odd_aspect": "of odd aspect ratio (width/height outside {low:.2f}..{high:.2f}; median {median_ratio:.2f})",
    "grayscale": "grayscale in a colour dataset (channel spread under {value:.1f} of 255)",
}


@dataclass
class ImageQuality:
    """One image's measures (None when it could not be decoded)."""

    sharpness: float | None = None  # log10(1 + variance of the Laplacian of the grey copy)
    brightness: float | None = None  # mean grey level 0..255
    colour: float | None = None  # mean absolute difference between channels, 0..255
    aspect: float | None = None  # log(width / height)


@dataclass
class QualityReport:
    thresholds: dict[str, dict] = field(default_factory=dict)  # flag -> measure, side, value(s), median, mad
    flags: dict[str, list[str]] = field(default_factory=dict)  # flag -> paths
    shares: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> flag -> share of its images

    def to_dict(self) -> dict:
        return asdict(self)


def measure_quality(rgb: np.ndarray, grey: np.ndarray, width: int, height: int) -> ImageQuality:
    """Measures of one image from its small copies: ``rgb`` uint8 [H, W, 3], ``grey`` uint8 [H, W]."""
    g = grey.astype(np.float32)
    if min(g.shape) >= 3:
        laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
        sharpness = float(np.log10(1.0 + laplacian.var()))
    else:
        sharpness = None
    c = rgb.astype(np.int16)
    colour = float((np.abs(c[..., 0] - c[..., 1]) + np.abs(c[..., 1] - c[..., 2]) + np.abs(c[..., 2] - c[..., 0]))
                   .mean() / 3)
    aspect = float(np.log(width / height)) if width > 0 and height > 0 else None
    return ImageQuality(sharpness, float(g.mean()), colour, aspect)


def quality_flags(paths: Sequence[str], splits: Sequence[str], measures: Sequence[ImageQuality | None]
                  ) -> QualityReport:
    """Flags from the distribution of ``measures`` (one per path, None for files not decoded)."""
    report = QualityReport()
    measured = [i for i, m in enumerate(measures) if m is not None and m.brightness is not None]
    if len(measured) < MIN_IMAGES:
        return report
    for flag, (name, side, floor) in RULES.items():
        index = [i for i in measured if getattr(measures[i], name) is not None]
        values = np.array([getattr(measures[i], name) for i in index])
        if len(values) < MIN_IMAGES:
            continue
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        reach = max(K_MAD * MAD_SCALE * mad, floor)
        low, high = median - reach, median + reach
        out = values < low if side == "low" else values > high if side == "high" else (values < low) | (values > high)
        report.thresholds[flag] = {"measure": name, "side": side, "median": median, "mad": mad,
                                   "value": low if side == "low" else high, "low": low, "high": high}
        report.flags[flag] = [paths[i] for i, o in zip(index, out) if o]
    colours = np.array([measures[i].colour for i in measured])
    is_colour_dataset = float((colours >= GREY_SPREAD).mean()) > COLOUR_DATASET
    report.thresholds["grayscale"] = {"measure": "colour", "side": "low", "value": GREY_SPREAD,
                                      "median": float(np.median(colours)), "colour_dataset": is_colour_dataset}
    report.flags["grayscale"] = ([paths[i] for i, c in zip(measured, colours) if c < GREY_SPREAD]
                                 if is_colour_dataset else [])
    report.shares = split_shares(report.flags, paths, splits)
    return report


def split_shares(flags: dict[str, list[str]], paths: Sequence[str], splits: Sequence[str]) -> dict:
    """split -> flag -> the share of that split's images that carry the flag."""
    totals: dict[str, int] = {}
    split_of = {}
    for path, split in zip(paths, splits):
        totals[split] = totals.get(split, 0) + 1
        split_of[path] = split
    shares = {split: {} for split in totals}
    for flag, flagged in flags.items():
        for split in totals:
            count = sum(1 for p in set(flagged) if split_of.get(p) == split)
            shares[split][flag] = count / totals[split]
    return shares


def quality_warnings(report: QualityReport) -> list[str]:
    """One line per flag that found images, with its threshold."""
    found = []
    for flag, text in TEXTS.items():
        count = len(report.flags.get(flag, []))
        if not count:
            continue
        t = report.thresholds[flag]
        if flag == "odd_aspect":  # stored as log(w/h): shown as ratios
            words = text.format(low=float(np.exp(t["low"])), high=float(np.exp(t["high"])),
                                median_ratio=float(np.exp(t["median"])))
        else:
            words = text.format(**t)
        found.append(f"{count} {'image is' if count == 1 else 'images are'} {words}")
    return found


def threshold_text(flag: str, threshold: dict) -> str:
    """The threshold of ``flag`` in words, for tables."""
    if flag == "odd_aspect":
        return f"w/h < {np.exp(threshold['low']):.2f} or > {np.exp(threshold['high']):.2f}"
    sign = "<" if threshold["side"] == "low" else ">"
    return f"{threshold['measure']} {sign} {threshold['value']:.2f} (median {threshold['median']:.2f})"


def measure_paths(paths: Sequence[str], *, size: int = 128) -> list[ImageQuality | None]:
    """The measures of image files, as the audit takes them (None for a file that cannot be decoded)."""
    from honed.data.decode import DecodeError, decode_image

    measures: list[ImageQuality | None] = []
    for path in paths:
        try:
            image = decode_image(str(path), shrink_to=size)
        except (DecodeError, OSError):
            measures.append(None)
            continue
        width, height = image.size
        small = image.copy()
        small.thumbnail((size, size))
        measures.append(measure_quality(np.asarray(small.convert("RGB")), np.asarray(small.convert("L")),
                                        width, height))
    return measures


def split_quality(paths_by_split: dict[str, Sequence[str]]) -> QualityReport:
    """Quality flags of the images of several splits, thresholds from them all pooled: what ``analyze`` asks
    (is the validation set blur-heavy?) through ``QualityReport.shares``."""
    paths = [p for split in paths_by_split for p in paths_by_split[split]]
    splits = [split for split in paths_by_split for _ in paths_by_split[split]]
    return quality_flags(paths, splits, measure_paths(paths))
