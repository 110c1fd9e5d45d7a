"""``create_ensemble``: combine finished runs (or one run's snapshots) into an ensemble run.

The members' saved validation predictions are aligned, combined by the chosen rule (weights, when the rule
has them, fitted without leaking: cross-fitted for the validation score), scored with the members' main
metric, compared in the diversity report, and saved as a run of kind 'ensemble' in the workspace.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from honed.config import RunConfig
from honed.combine.rules import CombinationRule, default_method, get_method
from honed.ensemble.diversity import diversity_report
from honed.combine.scoring import score
from honed.ensemble.members import Member, aligned_outputs, check_compatible, resolve_members
from honed.ensemble.store import EnsembleResult, SplitOutputs, claim_folder, save_ensemble
from honed.combine.simplex import fit_rule
from honed.errors import HonedError
from honed.tracking.ledger import Ledger, has_ledger
from honed.artifacts.run_folder import MANIFEST_FILE


def create_ensemble(runs: Sequence[str | Path] = (), *, name: str = "", method: str = "auto",
                    workspace: str | Path = "honed-runs", snapshots: str | Path | None = None, folds: int = 5,
                    seed: int = 0) -> EnsembleResult:
    """An ensemble run of ``runs`` (names in ``workspace`` or run folders), or of the snapshots of one run.

    ``method``: soft, hard, weighted (classification), mean or weighted (regression); auto: soft or mean.
    ``folds``: cross-fitting folds over the validation rows for fitted weights.
    """
    started = time.perf_counter()
    workspace = Path(workspace)
    if snapshots is not None and runs:
        raise HonedError("give either member runs or --snapshots RUN, not both")
    if snapshots is not None:
        from honed.ensemble.snapshot import snapshot_members, snapshot_test_tables
        from honed.artifacts.run_folder import find_run

        run_dir = find_run(workspace, str(snapshots))
        members = snapshot_members(run_dir)
        return build_ensemble(members, kind="snapshot", name=name, method=method, workspace=workspace,
                              parent=run_dir.name, folds=folds, seed=seed, started=started,
                              test_tables=snapshot_test_tables(members),
                              change="{method} vote of " + f"{len(members)} snapshots of {run_dir.name}")
    members = resolve_members(runs, workspace)
    return build_ensemble(members, kind="vote", name=name, method=method, workspace=workspace,
                          parent=members[0].name, folds=folds, seed=seed, started=started,
                          change="{method} vote of " + f"{len(members)} runs: " + ", ".join(m.name for m in members))


def build_ensemble(members: Sequence[Member], *, kind: str, name: str, method: str, workspace: Path,
                   parent: str | None, change: str, folds: int = 5, seed: int = 0,
                   weights: np.ndarray | None = None, base_config: RunConfig | None = None,
                   test_tables: list[pd.DataFrame] | None = None, details: dict[str, Any] | None = None,
                   extra_metrics: dict[str, float] | None = None, manifest_frame: pd.DataFrame | None = None,
                   tables: dict[str, pd.DataFrame] | None = None, started: float | None = None) -> EnsembleResult:
    """Combine, score, report and save; ``change`` may hold "{method}"; ``tables`` are extra parquet files
    for the folder (bagging's draws, for example). Used by every kind of ensemble."""
    started = time.perf_counter() if started is None else started
    labels = check_compatible(members)
    task, classes, targets_cols = labels["task"], labels["classes"], labels["target_columns"]
    method = default_method(task) if method in ("", "auto") else method
    get_method(method, task)
    base_config = base_config or members[0].config()
    metric = base_config.main_metric()
    names = [m.name for m in members]

    paths, outputs, targets = aligned_outputs([m.val_table() for m in members], names, task, classes, targets_cols)
    rule, combined, crossfit = fit_rule(method, outputs, targets, task, weights=weights, folds=folds, seed=seed)
    val = SplitOutputs(paths, targets, outputs, combined)
    metrics = score(combined, targets, task)
    test = _test_split(members, names, rule, task, classes, targets_cols, test_tables)
    if test is not None:
        metrics.update({f"test_{k}": v for k, v in score(test.ensemble, test.targets, task).items()})
    diversity = diversity_report(names, outputs, targets, combined, task=task, metric=metric)
    member_scores = dict(zip(names, diversity.member_scores))
    metrics.update({f"member:{n}:{metric}": s for n, s in member_scores.items()})
    metrics.update(extra_metrics or {})
    details = dict(details or {})
    if crossfit is not None:
        details["cross_fit"] = {"folds": crossfit.folds, "seed": seed,
                                "fold_weights": [w.tolist() for w in crossfit.fold_weights]}

    name, run_dir = claim_folder(workspace, name, f"ensemble-{method}")
    save_ensemble(run_dir, kind=kind, members=members, rule=rule, task=task, classes=classes,
                  target_columns=targets_cols, metric=metric, val=val, test=test, diversity=diversity,
                  metrics=metrics, base_config=base_config, parent=parent,
                  change=change.replace("{method}", method),
                  details=details, manifest_frame=_manifest(members, manifest_frame),
                  fingerprint=_fingerprint(members[0]), tables=tables or {},
                  duration_s=time.perf_counter() - started)
    return EnsembleResult(name, run_dir, kind, rule, metric, float(metrics[metric]), metrics, names,
                          member_scores, diversity, details)


def _test_split(members: Sequence[Member], names: list[str], rule: CombinationRule, task: str, classes,
                target_columns, tables: list[pd.DataFrame] | None) -> SplitOutputs | None:
    """The test split when every member predicted the same one; None otherwise (reported, not selected on)."""
    tables = tables if tables is not None else [m.test_table() for m in members]
    if any(t is None for t in tables):
        return None
    try:
        paths, outputs, targets = aligned_outputs(tables, names, task, classes, target_columns, split="test")
    except HonedError:
        return None  # members with different test splits: the ensemble is scored on validation only
    return SplitOutputs(paths, targets, outputs, rule.combine(outputs))


def _manifest(members: Sequence[Member], given: pd.DataFrame | None) -> pd.DataFrame | None:
    if given is not None:
        return given
    path = members[0].run_dir / MANIFEST_FILE
    return pd.read_parquet(path) if path.is_file() else None


def _fingerprint(member: Member) -> str:
    """The first member's data fingerprint from its ledger row ('' when the ledger does not know it)."""
    if not has_ledger(member.run_dir.parent):
        return ""
    with Ledger(member.run_dir.parent) as ledger:
        record = ledger.get(member.run_dir.name)
    return record.data_fingerprint if record else ""
