"""An ensemble as a first-class run: a folder in the workspace and a ledger row of kind 'ensemble'.

The folder holds::

    ensemble.json            the definition: members (run folder + weights file), the combination rule,
                             how its weights were fitted, the scores, and what built it (vote, bag, boost, ...)
    config.yaml, labels.json what ``honed show`` / ``honed predict`` look for in a run folder (config.yaml
                             describes the ensemble; its model name is "ensemble")
    manifest.parquet         the samples and splits the members were validated on
    predictions_val.parquet  the ensemble's validation predictions (cross-fitted for fitted weights)
    predictions_test.parquet when every member predicted the same test split
    diversity.json/.md/.png  the diversity report

Files are written first (atomically; ensemble.json, which makes the folder load as an ensemble, last of them),
the ledger row after them, as for every run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from honed.config import ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.data.manifest import Manifest
from honed.combine.calibration import CALIBRATED_METHODS, calibrate_run
from honed.combine.rules import TIE_RULE, CombinationRule
from honed.ensemble.diversity import DiversityReport, save_report
from honed.ensemble.members import Member
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.tracking.atomic import write_json, write_text
from honed.tracking.ledger import Ledger, RunRecord, check_name
from honed.artifacts.run_folder import CONFIG_FILE, ENSEMBLE_FILE, LABELS_FILE, MANIFEST_FILE, save_table
from honed.predict.ensembles import FORMAT_NAME, FORMAT_VERSION, member_folders



@dataclass
class EnsembleResult:
    """What building an ensemble gives back: its folder, scores and diversity report."""

    name: str
    run_dir: Path
    kind: str
    rule: CombinationRule | None  # None: boost --method gbm, whose run is a gbm probe run, not an ensemble
    metric: str
    score: float
    metrics: dict[str, float]  # validation metrics (cross-fitted for fitted rules), test_* when shared, extras
    members: list[str]
    member_scores: dict[str, float]
    diversity: DiversityReport | None
    details: dict[str, Any] = field(default_factory=dict)  # bag: out-of-bag; boost: errors and alphas


@dataclass
class SplitOutputs:
    """One split as the members and the ensemble predicted it."""

    paths: list[str]
    targets: np.ndarray
    members: np.ndarray  # [M, N, C]
    ensemble: np.ndarray  # [N, C]


def claim_folder(workspace: Path, name: str, prefix: str) -> tuple[str, Path]:
    """A new, unique run name and its folder; an existing name is refused, as for training runs."""
    with Ledger(workspace) as ledger:
        name = name or ledger.new_name(prefix)
        check_name(name)
        if ledger.get(name) is not None or (workspace / name).exists():
            raise HonedError(f"run {name!r} already exists in {workspace}: choose another --name")
    run_dir = workspace / name
    run_dir.mkdir(parents=True)
    return name, run_dir


def member_entry(member: Member, ensemble_dir: Path) -> dict[str, str]:
    """A member as ensemble.json stores it: its folder relative to the workspace when inside it."""
    run_dir = member.run_dir.resolve()
    try:
        path = str(run_dir.relative_to(ensemble_dir.resolve().parent))
    except ValueError:
        path = str(run_dir)
    return {"name": member.name, "path": path, "weights": member.weights}


def save_ensemble(run_dir: Path, *, kind: str, members: Sequence[Member], rule: CombinationRule,
                  task: str, classes: Sequence[str], target_columns: Sequence[str], metric: str,
                  val: SplitOutputs | None, test: SplitOutputs | None, diversity: DiversityReport | None,
                  metrics: dict[str, float], base_config: RunConfig, parent: str | None, change: str,
                  details: dict[str, Any], manifest_frame: pd.DataFrame | None, fingerprint: str,
                  duration_s: float, tables: dict[str, pd.DataFrame] | None = None) -> None:
    """Write the folder, then the ledger row (kind 'ensemble'; ``parent``: the first member, or the run whose
    snapshots it combines)."""
    from honed.artifacts.predictions import predictions_table

    labels = Manifest(frame=pd.DataFrame({"path": [], "split": []}), task=task, classes=list(classes),
                      target_columns=list(target_columns))
    definition = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": kind, "name": run_dir.name, "task": task,
        "classes": list(classes), "target_columns": list(target_columns), "metric": metric,
        "rule": rule.to_dict(), "tie_rule": TIE_RULE,
        "members": [member_entry(m, run_dir) for m in members], "metrics": metrics, "details": details,
    }
    write_text(run_dir / CONFIG_FILE, _config(base_config, run_dir, parent, change).to_yaml())
    write_json(run_dir / LABELS_FILE, {"task": task, "classes": list(classes), "target_columns": list(target_columns)})
    if manifest_frame is not None:
        save_table(run_dir / MANIFEST_FILE, manifest_frame)
    for split, outputs in (("val", val), ("test", test)):
        if outputs is not None:
            save_table(run_dir / f"predictions_{split}.parquet",
                       predictions_table(outputs.paths, outputs.ensemble.astype(np.float32), outputs.targets, labels))
    for file_name, table in (tables or {}).items():
        save_table(run_dir / file_name, table)
    if diversity is not None:
        save_report(diversity, run_dir)
    if rule.method in CALIBRATED_METHODS:  # soft votes: a temperature on the combined validation log-probabilities
        calibrate_run(run_dir)
    write_json(run_dir / ENSEMBLE_FILE, _finite(definition))  # last: it makes the folder loadable as an ensemble
    with Ledger(run_dir.parent) as ledger:
        ledger.upsert(RunRecord(
            name=run_dir.name, parent=parent, change=change, kind="ensemble", status="done", task=task,
            model=f"ensemble:{rule.method}", data_fingerprint=fingerprint, metric=metric,
            score=metrics.get(metric), greater_is_better=GREATER_IS_BETTER[metric],
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)},
            duration_s=duration_s, path=run_dir.name))


def _config(base: RunConfig, run_dir: Path, parent: str | None, change: str) -> RunConfig:
    """config.yaml of the ensemble: the data it was built on; the model is the ensemble, not an architecture."""
    config = copy.deepcopy(base)
    config.name, config.workspace = run_dir.name, str(run_dir.parent)
    config.parent = parent or ""
    config.change = change
    config.model, config.preprocess, config.train = ModelConfig(name="ensemble"), PreprocessConfig(), TrainConfig()
    return config


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value




def definition_members(run_dir: Path, definition: dict[str, Any]) -> list[Member]:
    """The members named in a definition, their folders resolved against the ensemble's workspace."""
    return [Member(name, folder, weights) for name, folder, weights in member_folders(run_dir, definition)]
