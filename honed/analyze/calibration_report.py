"""How honest a classification run's probabilities are, before and after its temperature: expected calibration
error (15 bins), NLL and accuracy on its validation split (where the temperature was fitted) and its test
split (which the fit never saw), and a reliability diagram. ``analyze`` and the HTML report show it.

A run without ``calibration.json`` (trained before honed calibrated, or too few validation images) is reported
as uncalibrated: temperature 1, so "after" equals "before".
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from honed.artifacts.run_folder import LABELS_FILE, RunFolder
from honed.combine.calibration import (ECE_BINS, apply_temperature, calibration_words, expected_calibration_error,
                                       negative_log_likelihood, reliability, table_outputs)
from honed.tasks import get_task
from honed.tracking.atomic import atomic_path

FIGURE_FILE = "reliability.png"


def calibration_report(run_dir: str | Path) -> dict[str, Any]:
    """ECE, NLL and accuracy before and after per split; {} for a regression run or one without predictions."""
    run = RunFolder(Path(run_dir))
    if not (run.path / LABELS_FILE).is_file():
        return {}
    labels = run.labels()
    if not get_task(labels.task).is_classification:
        return {}
    raw = run.calibration()
    temperature = 1.0 if raw is None else float(raw["temperature"])
    splits = {}
    for split in ("val", "test"):
        table = run.predictions(split)
        if table is None or table.empty:
            continue
        probs, targets = table_outputs(table, labels.classes)
        after = apply_temperature(probs, temperature)
        splits[split] = {
            "images": int(len(targets)),
            "ece": [expected_calibration_error(probs, targets), expected_calibration_error(after, targets)],
            "nll": [negative_log_likelihood(probs, targets), negative_log_likelihood(after, targets)],
            "accuracy": [float((probs.argmax(1) == targets).mean()), float((after.argmax(1) == targets).mean())]}
    if not splits:
        return {}
    return {"status": "uncalibrated" if raw is None else "calibrated", "temperature": temperature,
            "bins": ECE_BINS, "splits": splits, "words": calibration_words(raw)}


def reliability_png(run_dir: str | Path) -> bytes | None:
    """The reliability diagram (accuracy against confidence per bin, raw and calibrated) of the test split, or
    of the validation split when there is no test split; None for regression or without predictions."""
    run = RunFolder(Path(run_dir))
    report = calibration_report(run.path)
    if not report:
        return None
    split = "test" if "test" in report["splits"] else "val"
    probs, targets = table_outputs(run.predictions(split), run.labels().classes)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfectly calibrated")
    for probabilities, name, colour, index in ((probs, "raw", "#c62828", 0),
                                               (apply_temperature(probs, report["temperature"]),
                                                f"T = {report['temperature']:.2f}", "#1565c0", 1)):
        bins = reliability(probabilities, targets)
        ece = report["splits"][split]["ece"][index]
        ax.plot(bins["confidence"], bins["accuracy"], marker="o", color=colour, label=f"{name} (ECE {ece:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy",
           title=f"reliability, {'test' if split == 'test' else 'validation'} ({len(targets)} images, "
                 f"{ECE_BINS} bins)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def save_reliability(run_dir: str | Path, folder: Path) -> str | None:
    """Write the reliability diagram into ``folder`` (the run's analysis folder); its file name, or None."""
    png = reliability_png(run_dir)
    if png is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / FIGURE_FILE) as tmp:
        Path(tmp).write_bytes(png)
    return FIGURE_FILE


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows (split, images, ECE, NLL, accuracy: before -> after) for the CLI and the report."""
    names = {"val": "validation (fitted on)", "test": "test (held out)"}
    return [[names[split], str(s["images"]), f"{s['ece'][0]:.4f} -> {s['ece'][1]:.4f}",
             f"{s['nll'][0]:.4f} -> {s['nll'][1]:.4f}", f"{s['accuracy'][0]:.4f} -> {s['accuracy'][1]:.4f}"]
            for split, s in report.get("splits", {}).items()]
