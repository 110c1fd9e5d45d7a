"""Sensitivity probes: evaluate a model again on the same images under each factor's transformation at fixed
strengths, and measure how much worse it does, with a paired bootstrap confidence interval over images.

The unit is the per-image failure: 1 - correct for classification, the mean absolute error over targets
for regression. The drop of a condition is the mean per-image increase in failure against the untouched
images (positive: the model does worse). Everything is deterministic for a given seed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from honed.analyze.factors import Factor
from honed.tasks import get_task

CHUNK = 256  # images transformed and predicted at once; fixed so random draws do not depend on batch size
BOOTSTRAP = 1000  # resamples for confidence intervals
CONFIDENCE = 0.95


class BatchPredictor(Protocol):
    """What probes need from a model: uint8 ``[B, 3, S, S]`` -> probabilities ``[B, C]`` or values ``[B, T]``."""

    def predict_batch(self, images: Tensor) -> np.ndarray: ...


@dataclass
class ProbeRun:
    """Per-image failures (and measurements, when asked) of one image set under every probe condition."""

    clean: np.ndarray  # [N] failure on the untouched images
    failures: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # (factor, strength index) -> [N]
    measured: dict[tuple[str, int], Tensor] = field(default_factory=dict)  # same keys -> [N] or [N, bins]
    outputs: np.ndarray | None = None  # [N, C] or [N, T] model outputs on the untouched images


def failures(outputs: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """Per-image failure: 1 - correct (classification) or mean absolute error (regression)."""
    return get_task(task).failures(outputs, targets)


def to_uint8(x: Tensor) -> Tensor:
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def predict_all(model: BatchPredictor, images: Tensor) -> np.ndarray:
    return np.concatenate([model.predict_batch(images[i:i + CHUNK]) for i in range(0, len(images), CHUNK)])


def run_probes(model: BatchPredictor, images: Tensor, targets: np.ndarray, task: str,
               factors: Sequence[Factor], *, seed: int, measure: bool = False,
               progress: Callable[[int], None] | None = None) -> ProbeRun:
    """Evaluate ``images`` (uint8 ``[N, 3, S, S]``) untouched and under every factor at every strength.

    With ``measure``, each transformed image is also measured along its factor (on the uint8 result, as a
    decoded image would be), which calibrates measurements against probe strengths.
    """
    outputs = predict_all(model, images)
    run = ProbeRun(clean=failures(outputs, targets, task), outputs=outputs)
    for factor in factors:
        for index, strength in enumerate(factor.strengths):
            generator = torch.Generator().manual_seed(condition_seed(seed, factor.name, index))
            outs, measured = [], []
            for start in range(0, len(images), CHUNK):
                changed = to_uint8(factor.transform(images[start:start + CHUNK].float() / 255, strength, generator))
                outs.append(model.predict_batch(changed))
                if measure and factor.measure is not None:
                    measured.append(factor.measure(changed.float() / 255))
            run.failures[factor.name, index] = failures(np.concatenate(outs), targets, task)
            if measured:
                run.measured[factor.name, index] = torch.cat(measured)
            if progress is not None:
                progress(1)
    return run


def condition_seed(seed: int, factor: str, index: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(factor.encode()) * 31 + index) % (2**63)


def paired_drop(clean: np.ndarray, probed: np.ndarray, *, seed: int) -> tuple[float, float, float]:
    """Mean increase in failure and its bootstrap confidence interval, resampling images (paired)."""
    delta = probed - clean
    return float(delta.mean()), *bootstrap_interval(delta, seed=seed)


def bootstrap_interval(values: np.ndarray, *, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over bootstrap resamples."""
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def difference_interval(inside: np.ndarray, outside: np.ndarray, *, seed: int) -> tuple[float, float, float]:
    """Mean of ``inside`` minus mean of ``outside`` and its bootstrap interval (each group resampled)."""
    if len(inside) == 0 or len(outside) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    a = inside[rng.integers(0, len(inside), size=(BOOTSTRAP, len(inside)))].mean(axis=1)
    b = outside[rng.integers(0, len(outside), size=(BOOTSTRAP, len(outside)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(a - b, [tail, 100 - tail])
    return float(inside.mean() - outside.mean()), float(low), float(high)


def probe_table(run: ProbeRun, factors: Sequence[Factor], *, image_set: str, scale: float,
                seed: int) -> list[dict]:
    """One row per factor and strength: failure, drop with interval, and the drop relative to ``scale``."""
    rows = []
    for factor in factors:
        for index, strength in enumerate(factor.strengths):
            probed = run.failures[factor.name, index]
            drop, low, high = paired_drop(run.clean, probed, seed=condition_seed(seed, factor.name, index))
            rows.append({"factor": factor.name, "strength": strength, "unit": factor.unit, "set": image_set,
                         "n": len(probed), "failure": float(probed.mean()), "clean_failure": float(run.clean.mean()),
                         "drop": drop, "ci_low": low, "ci_high": high, "relative_drop": drop / scale,
                         "significant": bool(low > 0)})
    return rows
