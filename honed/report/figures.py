"""The report's figures, drawn with matplotlib's Agg backend into PNG bytes (never to the screen or a file).

Each function takes plain data (``honed.report.data``) and returns the PNG; the page inlines it as a
data: URI, so the report stays one file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from honed.tasks import get_task

DPI = 100
THUMBNAIL_PX = 96


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless and deterministic: no display, no window
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def learning_curves(history: pd.DataFrame, metric: str) -> bytes:
    """Training and validation loss, and the main metric, per epoch (the columns metrics.csv has)."""
    plt = _pyplot()
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = history["epoch"]
    for column, label in (("train_loss", "train"), ("val_loss", "validation")):
        if column in history:
            ax_loss.plot(epochs, history[column], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    if ax_loss.lines:
        ax_loss.legend()
    if metric in history:
        ax_metric.plot(epochs, history[metric], marker="o", color="tab:green")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(_integer_ticks())
    fig.tight_layout()
    return _png(fig)


def confusion_matrix(classes: Sequence[str], matrix: np.ndarray) -> bytes:
    """Counts with the row-normalized share as colour, so small classes are as readable as large ones."""
    plt = _pyplot()
    n = len(classes)
    size = min(max(3.5, 0.45 * n + 2.0), 14.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, np.maximum(totals, 1), dtype=float)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    labels = [_short(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (colour: share of the true class)")
    if n <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _png(fig)


def sensitivity(factors: Sequence[dict]) -> bytes:
    """Left: the relative drop on training images at each probe strength, per factor. Right: factor scores."""
    plt = _pyplot()
    fig, (ax_curve, ax_score) = plt.subplots(1, 2, figsize=(10, 3.8))
    for factor in factors:
        strengths, drops = factor.get("strengths") or [], factor.get("sensitivity") or []
        if strengths and len(strengths) == len(drops):
            ax_curve.plot(range(len(strengths)), drops, marker="o", label=_short(str(factor.get("name", "?"))))
    ax_curve.set(xlabel="probe strength (weak to strong)", ylabel="relative drop",
                 title="sensitivity on training images")
    ax_curve.grid(alpha=0.3)
    ax_curve.xaxis.set_major_locator(_integer_ticks())
    if ax_curve.lines:
        ax_curve.legend(fontsize=7, ncol=2)
    names = [_short(str(f.get("name", "?"))) for f in factors]
    scores = [float(f.get("score") or 0.0) for f in factors]
    colours = ["tab:red" if f.get("significant") else "tab:gray" for f in factors]
    ax_score.barh(range(len(names)), scores, color=colours)
    ax_score.set_yticks(range(len(names)), names)
    ax_score.invert_yaxis()
    ax_score.set(xlabel="score (share of headroom)", title="factor scores (red: significant)")
    ax_score.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


def diversity(members: Sequence[str], disagreement: Sequence[Sequence], correlation: Sequence[Sequence],
              task: str) -> bytes:
    """The members' disagreement and error correlation as two annotated heatmaps."""
    plt = _pyplot()
    size = max(3.0, 0.6 * len(members) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    words = get_task(task).diversity
    titles = (words.disagreement_title, words.correlation)
    limits = (words.disagreement_range, (-1, 1))
    labels = [_short(m) for m in members]
    for ax, title, matrix, (low, high) in zip(axes, titles, (disagreement, correlation), limits):
        values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
        image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(title)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", color="white",
                    fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _png(fig)


def thumbnail(path: str | Path, size: int = THUMBNAIL_PX) -> bytes | None:
    """A PNG thumbnail of an image file, or None when it cannot be read (moved, not a file, undecodable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = size / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except (OSError, ValueError, UnidentifiedImageError):
        return None
    return buffer.getvalue()


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _short(label: str, limit: int = 18) -> str:
    """Tick labels stay readable: long class names are cut with an ellipsis; '$' is literal, not mathtext."""
    label = label if len(label) <= limit else label[: limit - 1] + "…"
    return label.replace("$", r"\$")
