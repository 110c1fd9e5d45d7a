"""Gather what a report shows from a workspace and a run folder into the plain dataclasses of
``honed.report.data``.

Every piece is optional: a field left ``None`` means its files are missing, and the page says how to add
them instead of failing. Nothing here draws or renders; ``figures`` and ``html`` do that.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Any
import zipfile

import numpy as np
import pandas as pd

from honed.errors import HonedError
from honed.report.data import AnalysisData, BundleCard, Outcome, ReportData, StepRow, Worst
from honed.tracking.ledger import Ledger, RunRecord, has_ledger, locate_run
from honed.artifacts.run_folder import CONFIG_FILE, LABELS_FILE, RunFolder
from honed.tasks import get_task

ANALYSIS_FILE = Path("analysis") / "analysis.json"
DIVERSITY_FILE = "diversity.json"
WORKFLOW_FILE = "workflow.json"  # a workflow's state (honed.workflow.state), read as plain JSON
BUNDLE_KINDS = ("export", "bundle", "finalize")  # ledger kinds whose row's path may point at a bundle
WORST_SHOWN = 12  # worst predictions listed with thumbnails


@dataclass
class Target:
    """What a report is about: the workspace, the run it centres on (None: the workspace's best), and for a
    workflow folder its name and final bundle."""

    workspace: Path | None
    run_dir: Path | None
    workflow: str = ""
    bundle: Path | None = None


def resolve_target(target: Path, workspace: Path | None) -> Target:
    """A run folder, a run name in ``workspace``, a workflow folder (``WORKSPACE/NAME`` with workflow.json:
    its best run and bundle) or a workspace (its best run). A run's or workflow's workspace is the folder
    holding it (where its ledger is), whatever ``workspace`` says: ``workspace`` only resolves names."""
    target = Path(target)
    if workspace is not None and not (target / CONFIG_FILE).is_file() and not (target / WORKFLOW_FILE).is_file():
        named = Path(workspace) / target
        target = named if (named / CONFIG_FILE).is_file() or (named / WORKFLOW_FILE).is_file() else target
    if (target / CONFIG_FILE).is_file():
        return Target(target.parent if has_ledger(target.parent) else None, target)
    if (target / WORKFLOW_FILE).is_file():
        return _workflow_target(target, target.parent)
    if target.is_dir() and has_ledger(target):
        return Target(target, None)
    located = locate_run(workspace, str(target)) if workspace is not None else None  # elsewhere, or not seen here
    if located is not None:
        return Target(located.parent, located)
    where = f" (looked in {workspace})" if workspace is not None else ""
    raise HonedError(f"{target} is neither a run folder nor a workspace{where}: give a run name with --workspace, "
                     "a run folder, or a workspace folder (see `honed runs`)")


def _workflow_target(folder: Path, workspace: Path) -> Target:
    """The workflow's best run (when it has a folder) and its final bundle (when exported)."""
    state = _read_json(folder / WORKFLOW_FILE) or {}
    best = str(state.get("best") or "") if isinstance(state, dict) else ""
    safe = bool(best) and not any(char in best for char in "/\\") and not best.startswith(".")
    run_dir = Path(workspace) / best if safe and (Path(workspace) / best / CONFIG_FILE).is_file() else None
    bundle = folder / "bundle"
    return Target(Path(workspace), run_dir, workflow=folder.name, bundle=bundle if bundle.exists() else None)


def collect(target: Path, *, workspace: Path | None = None, bundle: Path | None = None) -> ReportData:
    """The report's data for a run (folder or name in ``workspace``), a workflow folder or a whole workspace
    (both centre on their best run)."""
    resolved = resolve_target(target, workspace)
    workspace, run_dir = resolved.workspace, resolved.run_dir
    records = _records(workspace)
    if run_dir is None:
        run_dir = _best_run_dir(workspace, records)
    by_name = {r.name: r for r in records}
    record = by_name.get(run_dir.name)
    labels = _read_json(run_dir / LABELS_FILE) or {}
    task = labels.get("task") or (record.task if record else "classify")
    metric = record.metric if record and record.metric else _config_metric(run_dir, task)
    from honed.metrics import GREATER_IS_BETTER

    title = (f"honed report: workflow {resolved.workflow} (best run {run_dir.name})" if resolved.workflow
             else f"honed report: {run_dir.name}")
    data = ReportData(title=title, workspace=workspace, focus=run_dir.name, run_dir=run_dir, task=task,
                      metric=metric,
                      greater_is_better=record.greater_is_better if record else GREATER_IS_BETTER.get(metric, True))
    data.steps = step_tree(records, focus=run_dir.name)
    data.history = _history(run_dir)
    saved = _read_json(run_dir / ANALYSIS_FILE)
    predictions = _predictions(run_dir)
    if get_task(task).is_classification:  # a confusion matrix and worst images are classification's sections
        data.confusion = _confusion(saved, predictions, labels.get("classes") or [])
        data.worst, data.worst_source = _worst(saved, predictions)
    data.analysis = _analysis(run_dir, workspace, by_name, records)
    data.diversity, data.diversity_run = _diversity(run_dir, workspace, records)
    data.card = _card(bundle or resolved.bundle, run_dir, workspace, records)
    if get_task(task).is_classification:
        from honed.report.collect_quality import collect_data_quality

        folder = Path(workspace) / resolved.workflow if resolved.workflow and workspace else None
        data.data_quality = collect_data_quality(saved, predictions, labels.get("classes") or [], folder)
    return data


# ---------------------------------------------------------------------------------------------- ledger


def _records(workspace: Path | None) -> list[RunRecord]:
    if workspace is None or not has_ledger(workspace):
        return []
    with Ledger(workspace) as ledger:
        return ledger.runs()


def _best_run_dir(workspace: Path, records: list[RunRecord]) -> Path:
    """The best scored, finished run with a folder; HonedError when the workspace has none."""
    from honed.tracking.ledger import leaderboard_key

    for record in sorted(records, key=leaderboard_key):
        here = workspace / (record.path or record.name)  # else where a shared ledger says it is
        folder = here if (here / CONFIG_FILE).is_file() or not record.folder else Path(record.folder)
        if record.score is not None and record.status == "done" and (folder / CONFIG_FILE).is_file():
            return folder
    raise HonedError(f"the workspace {workspace} has no finished, scored run to report on: train one first "
                     "(`honed train`)")


def step_tree(records: list[RunRecord], *, focus: str = "") -> list[StepRow]:
    """The runs as a tree by parent (roots and siblings oldest first), with each run's delta from its parent."""
    by_name = {r.name: r for r in records}
    children: dict[str | None, list[RunRecord]] = {}
    for r in records:  # records come oldest first
        parent = r.parent if r.parent in by_name and r.parent != r.name else None
        children.setdefault(parent, []).append(r)
    scored = [r for r in records if r.score is not None]
    from honed.tracking.ledger import leaderboard_key

    best = min(scored, key=leaderboard_key).name if scored else ""
    rows: list[StepRow] = []
    seen: set[str] = set()

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            if r.name in seen:  # a cycle in hand-edited parents: show each run once
                continue
            seen.add(r.name)
            delta, improved = _delta(r, by_name.get(r.parent or ""))
            rows.append(StepRow(r.name, depth, r.parent, r.kind, r.status, r.model, r.metric, r.score, delta,
                                improved, r.duration_s, r.change, is_focus=r.name == focus, is_best=r.name == best))
            walk(r.name, depth + 1)

    walk(None, 0)
    for r in records:  # runs only reachable through a cycle
        if r.name not in seen:
            seen.add(r.name)
            rows.append(StepRow(r.name, 0, r.parent, r.kind, r.status, r.model, r.metric, r.score, None, None,
                                r.duration_s, r.change, is_focus=r.name == focus, is_best=r.name == best))
    return rows


def _delta(record: RunRecord, parent: RunRecord | None) -> tuple[float | None, bool | None]:
    if parent is None or record.score is None or parent.score is None or record.metric != parent.metric:
        return None, None
    delta = record.score - parent.score
    return delta, (None if delta == 0 else (delta > 0) == record.greater_is_better)


# ---------------------------------------------------------------------------------------------- run files


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged file reads as missing: the page says how to make it again


def _config_metric(run_dir: Path, task: str) -> str:
    from honed.report.compare import main_metric, read_config

    try:
        return main_metric(read_config(run_dir))
    except HonedError:  # missing or damaged config.yaml: the task's default metric
        return get_task(task).default_metric


def _history(run_dir: Path) -> pd.DataFrame | None:
    try:
        frame = RunFolder(run_dir).history()
    except (OSError, ValueError, pd.errors.ParserError):
        return None  # a damaged file reads as missing, as everywhere on the page
    return frame if frame is not None and len(frame) and "epoch" in frame else None


def _predictions(run_dir: Path) -> pd.DataFrame | None:
    try:
        return RunFolder(run_dir).predictions("val")
    except (OSError, ValueError):
        return None


def _confusion(saved: dict | None, predictions: pd.DataFrame | None, classes: list[str]
               ) -> tuple[list[str], np.ndarray] | None:
    """From the analysis when there is one, else counted from the validation predictions."""
    confusion = ((saved or {}).get("errors") or {}).get("confusion")
    if confusion and confusion.get("classes") and confusion.get("matrix"):
        return list(map(str, confusion["classes"])), np.asarray(confusion["matrix"], dtype=int)
    if predictions is None or not classes or not {"target", "prediction"} <= set(predictions.columns):
        return None
    from honed.analyze.mistakes import confusion as count

    return list(map(str, classes)), np.asarray(count(predictions, list(classes)), dtype=int)


def _worst(saved: dict | None, predictions: pd.DataFrame | None) -> tuple[list[Worst] | None, str]:
    rows = ((saved or {}).get("errors") or {}).get("worst")
    source = "analysis"
    if not rows and predictions is not None and {"loss", "target", "prediction"} <= set(predictions.columns):
        from honed.analyze.mistakes import worst_predictions

        frame = worst_predictions(predictions[predictions["target"] != predictions["prediction"]], WORST_SHOWN)
        rows, source = frame.to_dict("records"), "predictions"
    if not rows:
        return None, ""
    return [Worst(str(r.get("path", "")), str(r.get("target", "")), str(r.get("prediction", "")),
                  _number(r.get("confidence")), _number(r.get("loss"))) for r in rows[:WORST_SHOWN]], source


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------------------------------------- analysis


def _analysis(run_dir: Path, workspace: Path | None, by_name: dict[str, RunRecord],
              records: list[RunRecord]) -> AnalysisData | None:
    """The focus run's analysis, or else its nearest analyzed ancestor's (whose children tried the fixes)."""
    name, folder, seen = run_dir.name, run_dir, set()
    while folder is not None and name not in seen:
        seen.add(name)
        saved = _read_json(folder / ANALYSIS_FILE)
        if isinstance(saved, dict):
            return AnalysisData(source=name, factors=list(saved.get("factors") or []),
                                recommendations=list(saved.get("recommendations") or []),
                                recommended=dict(saved.get("recommended") or {}),
                                outcomes=_outcomes(name, by_name, records), shifts=dict(saved.get("shifts") or {}),
                                shift_png=_read_bytes(folder / ANALYSIS_FILE.parent / "shift_evidence.png"))
        record = by_name.get(name)
        if record is None or not record.parent or workspace is None:
            return None
        name = record.parent
        parent = by_name.get(name)
        folder = Path(workspace) / (parent.path or parent.name) if parent else Path(workspace) / name
    return None


def _read_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _outcomes(name: str, by_name: dict[str, RunRecord], records: list[RunRecord]) -> list[Outcome]:
    """The analyzed run's trained children, with their delta from it."""
    parent = by_name.get(name)
    out = []
    for r in records:
        if r.parent == name and r.kind == "train":  # not the analysis rows, ensembles or exports under it
            delta, improved = _delta(r, parent)
            out.append(Outcome(r.name, r.change, r.metric, r.score, delta, improved))
    return out


# ---------------------------------------------------------------------------------------------- ensembles


def _diversity(run_dir: Path, workspace: Path | None, records: list[RunRecord]) -> tuple[dict | None, str]:
    """The focus run's diversity report when it is an ensemble, else the best ensemble's in the workspace."""
    own = _read_json(run_dir / DIVERSITY_FILE)
    if isinstance(own, dict):
        return own, run_dir.name
    if workspace is None:
        return None, ""
    from honed.tracking.ledger import leaderboard_key

    for record in sorted((r for r in records if r.kind == "ensemble"), key=leaderboard_key):
        saved = _read_json(Path(workspace) / (record.path or record.name) / DIVERSITY_FILE)
        if isinstance(saved, dict):
            return saved, record.name
    return None, ""


# ---------------------------------------------------------------------------------------------- bundles


def _card(bundle: Path | None, run_dir: Path, workspace: Path | None, records: list[RunRecord]) -> BundleCard | None:
    """The model card of the given bundle, else of one the ledger records, else of one in the workspace
    made from the focus run (``<run>-bundle`` or any bundle whose bundle.json names the run)."""
    candidates: list[Path] = [Path(bundle)] if bundle is not None else []
    if workspace is not None:
        ws = Path(workspace)
        recorded = sorted((r for r in records if r.kind in BUNDLE_KINDS and r.path), key=lambda r: r.updated,
                          reverse=True)
        recorded.sort(key=lambda r: r.parent != run_dir.name)  # stable: the focus run's bundles first, newest first
        candidates += [ws / r.path for r in recorded]
        candidates += [ws / f"{run_dir.name}-bundle", ws / f"{run_dir.name}-bundle.zip"]
        candidates += sorted(p for p in ws.iterdir() if p.is_dir() and _bundle_name(p) == run_dir.name)
    for path in candidates:
        markdown = read_card(path)
        if markdown is not None:
            return BundleCard(path, markdown, _bundle_name(path) if path.is_dir() else "")
    return None


def _bundle_name(folder: Path) -> str:
    meta = _read_json(folder / "bundle.json")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def read_card(path: Path) -> str | None:
    """model_card.md from a bundle folder or .zip, or None when ``path`` is not a bundle with a card."""
    from honed.artifacts.bundle_files import BUNDLE_FILE
    from honed.artifacts.bundle_meta import CARD_FILE

    path = Path(path)
    if path.is_dir():
        card = path / CARD_FILE
        return card.read_text(errors="replace") if (path / BUNDLE_FILE).is_file() and card.is_file() else None
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = {Path(n).name: n for n in archive.namelist() if n.count("/") <= 1}  # root or one top folder
            if BUNDLE_FILE in names and CARD_FILE in names:
                return archive.read(names[CARD_FILE]).decode("utf-8", errors="replace")
    return None
