"""How far new data lies from the data a backbone was trained on, in the backbone's own feature space.

``honed export RUN --backbone-only`` writes, next to the weights file, the statistics of the source run's
training images as that backbone sees them (pooled features: mean and covariance) in
``<weights>.features.safetensors``. When ``--weights`` points at such a file, the advisor measures the
Fréchet distance between those statistics and the same features of the new data's sample, and says how it
compares with the distance between two samples of the source itself (a Fréchet distance from a few hundred
images is biased upwards, so the source's own figure at the advisor's sample size is the yardstick).

For ImageNet weights there are no such statistics (honed does not ship ImageNet's), so the advisor relies on
its probe gain alone; the distance is extra evidence where honed itself was the pretrainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from honed.errors import HonedError
from honed.tracking.atomic import save_tensors

STATS_SUFFIX = ".features.safetensors"
FORMAT = "honed-feature-stats"
SOURCE_SAMPLE = 2000  # source images whose features are summarised: covariance of up to ~1,300 dimensions
BASELINE_SAMPLE = 200  # the advisor's sample size (SAMPLE_IMAGES): the self-distance is measured at it


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of pooled features, and the source's distance to itself at ``baseline_sample``."""

    mean: np.ndarray  # float64 [F]
    cov: np.ndarray  # float64 [F, F]
    images: int
    baseline: float  # Fréchet distance between BASELINE_SAMPLE source images and the rest of the source
    baseline_sample: int
    model: str
    image_size: int

    @classmethod
    def of(cls, features: np.ndarray, *, model: str, image_size: int, seed: int = 0) -> FeatureStats:
        """Statistics of ``features`` [N, F], with the self-distance of a random BASELINE_SAMPLE split."""
        features = np.asarray(features, dtype=np.float64)
        if len(features) < 2 * BASELINE_SAMPLE:
            raise HonedError(f"{len(features)} source images are too few for feature statistics (at least "
                             f"{2 * BASELINE_SAMPLE})")
        order = np.random.default_rng(seed).permutation(len(features))
        part, rest = features[order[:BASELINE_SAMPLE]], features[order[BASELINE_SAMPLE:]]
        baseline = frechet_distance(*moments(part), *moments(rest))
        return cls(*moments(features), images=len(features), baseline=baseline, baseline_sample=BASELINE_SAMPLE,
                   model=model, image_size=image_size)

    def distance(self, features: np.ndarray) -> float:
        return frechet_distance(*moments(np.asarray(features, dtype=np.float64)), self.mean, self.cov)


def moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """The Fréchet (2-Wasserstein) distance between two Gaussians, squared, as FID defines it:
    |m_a - m_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))."""
    # tr((C_a C_b)^(1/2)) = the sum of the square roots of the eigenvalues of S C_b S, S = C_a^(1/2): symmetric,
    # so eigvalsh is exact and stable where scipy's sqrtm of the non-symmetric product is not
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def stats_path(weights: str | Path) -> Path:
    """Where the statistics of a weights file live: ``model.safetensors`` -> ``model.features.safetensors``."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + STATS_SUFFIX)


def save_stats(path: Path, stats: FeatureStats) -> None:
    tensors = {"mean": torch.from_numpy(stats.mean), "cov": torch.from_numpy(stats.cov)}
    save_tensors(path, tensors, metadata={
        "format": FORMAT, "model": stats.model, "image_size": str(stats.image_size), "images": str(stats.images),
        "baseline": repr(stats.baseline), "baseline_sample": str(stats.baseline_sample)})


def load_stats(weights: str | Path) -> FeatureStats | None:
    """The statistics saved next to ``weights``; None when there are none. A damaged file raises HonedError."""
    path = stats_path(weights)
    if not weights or not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
        return FeatureStats(mean=tensors["mean"].double().numpy(), cov=tensors["cov"].double().numpy(),
                            images=int(meta["images"]), baseline=float(meta["baseline"]),
                            baseline_sample=int(meta["baseline_sample"]), model=meta["model"],
                            image_size=int(meta["image_size"]))
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise HonedError(f"{path} is not readable feature statistics ({error}): delete it, or export the "
                         "backbone again with `honed export RUN --backbone-only`") from None
