"""The analysis figures as PNGs: worst-prediction gallery, confusion matrix, probe drops, factor ranking.

Each is written atomically (a crash leaves the old file or the new one) with matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from honed.tracking.atomic import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def gallery(images: torch.Tensor, titles: Sequence[str], path: Path, *, columns: int = 8) -> Path:
    """uint8 ``[N, 3, H, W]`` images in a grid, each with its (multi-line) title."""
    n = max(len(images), 1)
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=7)
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Counts with rows = true class, columns = predicted; annotated when small enough to read."""
    size = min(max(4.0, 0.45 * len(classes) + 2), 16.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(classes))
    labels = list(classes) if len(classes) <= 40 else [""] * len(classes)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (validation)")
    if len(classes) <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, int(count), ha="center", va="center", fontsize=7,
                        color="white" if count > threshold else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def probe_drops(rows: Sequence[dict], path: Path, *, metric: str) -> Path:
    """One panel per image set: the drop per factor, one bar per strength, with confidence intervals."""
    sets = list(dict.fromkeys(r["set"] for r in rows))
    fig, axes = plt.subplots(len(sets), 1, figsize=(11, 3.4 * len(sets)), squeeze=False)
    for ax, image_set in zip(axes[:, 0], sets):
        mine = [r for r in rows if r["set"] == image_set]
        factors = list(dict.fromkeys(r["factor"] for r in mine))
        width = 0.8 / max(sum(r["factor"] == factors[0] for r in mine), 1)
        for x, factor in enumerate(factors):
            bars = [r for r in mine if r["factor"] == factor]
            for k, r in enumerate(bars):
                shade = plt.cm.viridis(0.2 + 0.6 * k / max(len(bars) - 1, 1))
                error = [[max(r["drop"] - r["ci_low"], 0)], [max(r["ci_high"] - r["drop"], 0)]]
                ax.bar(x - 0.4 + width * (k + 0.5), r["drop"], width, color=shade, yerr=error, capsize=2)
                ax.text(x - 0.4 + width * (k + 0.5), 0, f"{r['strength']:g}", rotation=90, fontsize=6,
                        ha="center", va="bottom", color="white")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(factors)), factors)
        ax.set(ylabel=f"drop in {metric}", title=f"probe drops on {image_set} images (bars: strengths, 95% CI)")
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def factor_ranking(scores: Sequence[dict], path: Path) -> Path:
    """Horizontal bars: each factor's combined score with its expected drop and concentration."""
    names = [s["name"] for s in scores][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y + 0.25, [s["score"] for s in scores][::-1], 0.25, label="score", color="tab:red")
    ax.barh(y, [s["expected_drop"] for s in scores][::-1], 0.25, label="expected drop (shift x sensitivity)",
            color="tab:blue")
    ax.barh(y - 0.25, [s["concentration"] for s in scores][::-1], 0.25, label="error concentration",
            color="tab:green")
    ax.set_yticks(y, names)
    ax.set(xlim=(0, 1), xlabel="share of the headroom", title="which factor explains the failures")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
