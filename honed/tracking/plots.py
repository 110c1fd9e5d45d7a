"""Learning curves as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from honed.tracking.atomic import atomic_path  # noqa: E402


def plot_curves(history: pd.DataFrame, metric: str, path: Path) -> None:
    """Loss (train and validation) and the main metric per epoch, side by side."""
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(history["epoch"], history["train_loss"], marker="o", label="train")
    if "val_loss" in history:  # a run without a validation split (a refit) has only its training loss
        ax_loss.plot(history["epoch"], history["val_loss"], marker="o", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    if metric in history:
        ax_metric.plot(history["epoch"], history[metric], marker="o", color="tab:green")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
