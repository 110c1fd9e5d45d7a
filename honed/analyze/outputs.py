"""Where an analysis is kept: ``RUN/analysis/`` and one ledger row.

Files (each written atomically): ``analysis.json`` (everything, see ``Analysis.to_dict``), ``probes.csv``,
``worst.png`` (the top-loss validation images with true and predicted labels and confidence, or the largest
residuals), ``confusion.png`` (classification), ``probes.png`` (drops per factor and strength with 95%
intervals) and ``ranking.png`` (factor scores). JSON comes after them, so its presence means the figures are there.

Ledger: when the run's folder sits in a workspace (a ``ledger.sqlite`` beside it, or a ledger URL set), a row of kind ``analysis``
named ``<run>-analysis`` (``-2``, ``-3``... on re-analysis), parent = the run, ``change`` = the top
recommendation, no score (so the leaderboard ranks only trained models), and the factor scores as metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from honed.analyze import plots
from honed.analyze.analysis import ANALYSIS_DIR, ANALYSIS_FILE, Analysis
from honed.analyze.source import RunSource
from honed.data.dataset import ImageDataset
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.tracking.atomic import atomic_path, write_json
from honed.tracking.ledger import Ledger, RunRecord, has_ledger
from honed.tasks import get_task


def save_analysis(analysis: Analysis, source: RunSource, *, duration_s: float) -> None:
    """Write the figures and tables, then analysis.json, then (last, as the ledger protocol asks) the row."""
    folder = analysis.run_dir / ANALYSIS_DIR
    folder.mkdir(exist_ok=True)
    files = {"worst": "worst.png", "probes": "probes.png", "ranking": "ranking.png", "probe_table": "probes.csv"}
    _worst_gallery(analysis, source, folder / files["worst"])
    task = get_task(analysis.task)
    if task.is_classification:  # classification's own section
        files["confusion"] = "confusion.png"
        confusion = analysis.errors["confusion"]
        plots.confusion_matrix(np.array(confusion["matrix"]), confusion["classes"], folder / files["confusion"])
    plots.probe_drops(analysis.probes, folder / files["probes"], metric=task.failure_word)
    plots.factor_ranking([f.to_dict() for f in analysis.factors], folder / files["ranking"])
    if analysis.evidence_images is not None:  # the worst images a shift explains, and the same turned back
        from honed.analyze.shift_evidence import save_gallery

        files["shift_evidence"] = "shift_evidence.png"
        save_gallery(analysis.evidence_images, folder / files["shift_evidence"])
    with atomic_path(folder / files["probe_table"]) as tmp:
        pd.DataFrame(analysis.probes).to_csv(tmp, index=False)
    analysis.files = {**files, "analysis": ANALYSIS_FILE}
    if not has_ledger(analysis.run_dir.parent):
        write_json(folder / ANALYSIS_FILE, _finite(analysis.to_dict()))
        return
    _record(analysis, source, duration_s)


def read_analysis(run_dir: str | Path) -> dict | None:
    """The saved ``analysis.json`` of a run, or None when it was never analyzed."""
    import json

    path = Path(run_dir) / ANALYSIS_DIR / ANALYSIS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HonedError(f"{path} is not valid JSON ({error}): delete it and run `honed analyze` again") from None


def _worst_gallery(analysis: Analysis, source: RunSource, path: Path) -> None:
    if get_task(analysis.task).is_classification:  # the worst classified images, or the largest residuals
        rows = analysis.errors["worst"]
        titles = [f"true {r['target']}\npred {r['prediction']} ({r['confidence']:.2f})" for r in rows]
    else:
        rows = analysis.errors["residuals"]
        titles = [f"error {r['abs_error']:.3g}" for r in rows]
    plots.gallery(_images(source, [r["path"] for r in rows]), titles, path)


def _images(source: RunSource, paths: list[str]) -> torch.Tensor:
    """The named validation images, decoded with the run's preprocessing, in the order given."""
    frame = source.manifest.frame
    rows = frame[(frame["split"] == "val") & frame["path"].isin(paths)].drop_duplicates("path")
    rows = rows.set_index("path").loc[paths].reset_index()
    dataset = ImageDataset(rows, source.manifest.targets(rows), source.config.preprocess.image_size,
                           datasets=source.manifest.datasets)
    size = source.config.preprocess.image_size
    return torch.stack([dataset.load_image(i) for i in range(len(rows))]) if len(rows) else torch.zeros(
        0, 3, size, size, dtype=torch.uint8)


def _record(analysis: Analysis, source: RunSource, duration_s: float) -> None:
    """Name the analysis, write analysis.json with that name, then insert its ledger row."""
    top = analysis.recommendations[0] if analysis.recommendations else None
    change = f"analysis: {top.title} ({top.policy})" if top and top.policy else (
        f"analysis: {top.title}" if top else "analysis: no significant weakness")
    metrics = {"val_failure": analysis.summary["val_failure"], "relative_gap": analysis.summary["relative_gap"],
               **{f"score:{f.name}": f.score for f in analysis.factors}}
    with Ledger(analysis.run_dir.parent) as ledger:
        parent = ledger.get(source.name)
        for _ in range(3):  # another process may claim the same name between new_name and insert
            analysis.ledger_name = ledger.new_name(f"{source.name}-analysis")
            write_json(analysis.folder / ANALYSIS_FILE, _finite(analysis.to_dict()))
            try:
                ledger.insert(RunRecord(
                    name=analysis.ledger_name, parent=source.name, change=change, kind="analysis", status="done",
                    task=analysis.task, model=source.config.model.name,
                    data_fingerprint=parent.data_fingerprint if parent else "", metric=analysis.metric, score=None,
                    greater_is_better=GREATER_IS_BETTER[analysis.metric], metrics=_finite(metrics),
                    duration_s=duration_s, path=f"{source.name}/{ANALYSIS_DIR}"))
                return
            except HonedError:
                continue
    raise HonedError(f"could not record the analysis of {source.name} in the ledger: run `honed analyze` again")


def _finite(value):
    """JSON-safe: NaN and infinities become None, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
