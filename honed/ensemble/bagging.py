"""Bagging: K members, each trained on a bootstrap sample of the training split (n rows drawn with
replacement), all validated on the same validation split, combined by vote.

The out-of-bag (OOB) score uses the training images themselves: each is scored by the members whose
bootstrap sample did not draw it (about 37% of them each), combined by the bag's own rule. Rows that every
member drew have no OOB prediction; the coverage says how many did. The draws are saved
(bootstrap.parquet: one count column per member) next to the OOB predictions (oob_predictions.parquet).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.ensemble.build import build_ensemble
from honed.ensemble.combine import CombinationRule, default_method, get_method
from honed.ensemble.members import Member
from honed.ensemble.resample import (
    ensemble_name,
    predict_frame,
    prepared_manifest,
    train_member,
    with_training_rows,
)
from honed.ensemble.store import EnsembleResult
from honed.errors import HonedError
from honed.ensemble.scoring import score
from honed.training.evaluation import predictions_table
from honed.training.reporter import LogReporter, Reporter

BOOTSTRAP_FILE = "bootstrap.parquet"
OOB_FILE = "oob_predictions.parquet"


def bootstrap_counts(n: int, members: int, seed: int) -> np.ndarray:
    """``[members, n]``: how often each member's bootstrap sample drew each training row."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(members)])


def bag(config: RunConfig, *, members: int = 5, method: str = "auto", manifest: Manifest | None = None,
        reporter: Reporter | None = None, workers: int = 0) -> EnsembleResult:
    """Train ``members`` runs on bootstrap samples and save them as an ensemble run with its OOB score.

    ``config`` holds the training settings shared by the members (``config.name`` names the ensemble;
    members are NAME-b0, NAME-b1, ...). ``method``: soft or hard (classification), mean (regression).
    """
    started = time.perf_counter()
    reporter = reporter or LogReporter()
    if members < 2:
        raise HonedError(f"--members must be at least 2, not {members}")
    method = default_method(config.data.task) if method in ("", "auto") else method
    if get_method(method, config.data.task).fitted:
        raise HonedError(f"bagging combines its members by plain vote: use {default_method(config.data.task)} "
                         "or hard (weights could only be fitted on the validation rows the bag is scored on)")
    name = ensemble_name(config, "bag")
    prepared = prepared_manifest(config, manifest)
    train_rows = prepared.split("train")
    counts = bootstrap_counts(len(train_rows), members, config.train.seed)
    results = []
    for k in range(members):
        reporter.message(f"bag member {k + 1}/{members}: {int((counts[k] > 0).sum())} distinct of "
                         f"{len(train_rows)} training images")
        drawn = np.repeat(np.arange(len(train_rows)), counts[k])
        results.append(train_member(config, f"{name}-b{k}", with_training_rows(prepared, drawn),
                                    change=f"bootstrap sample {k + 1}/{members} of the training split (bag {name})",
                                    seed=config.train.seed + k, reporter=reporter))
    team = [Member(r.name, r.run_dir) for r in results]
    rule = CombinationRule(method)
    reporter.message("scoring the training images out of bag")
    oob_outputs, covered = out_of_bag(team, counts, rule, train_rows, prepared, workers=workers)
    targets = prepared.targets(train_rows)
    oob_scores = score(oob_outputs[covered], targets[covered], prepared.task) if covered.any() else {}
    extra = {f"oob_{k}": v for k, v in oob_scores.items()}
    extra["oob_coverage"] = float(covered.mean())
    rows = np.flatnonzero(covered)
    table = predictions_table(train_rows["path"].iloc[rows].tolist(), oob_outputs[rows].astype(np.float32),
                              targets[rows], prepared)
    table.insert(1, "oob_members", (counts == 0).sum(axis=0)[rows])
    draws = pd.DataFrame({"path": train_rows["path"].tolist(),
                          **{f"count:{m.name}": counts[k] for k, m in enumerate(team)}})
    return build_ensemble(team, kind="bag", name=name, method=method, workspace=Path(config.workspace),
                          parent=team[0].name, base_config=config, started=started, extra_metrics=extra,
                          change=f"bagging: {members} members on bootstrap samples, {method} vote",
                          details={"members": members, "seed": config.train.seed, "oob": extra},
                          tables={BOOTSTRAP_FILE: draws, OOB_FILE: table},
                          manifest_frame=_without_origin(prepared.frame))


def out_of_bag(members: list[Member], counts: np.ndarray, rule: CombinationRule, train_rows: pd.DataFrame,
               manifest: Manifest, *, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """OOB outputs ``[n, C]`` (NaN where no member left the row out) and the mask of covered rows."""
    out = counts == 0  # [M, n]: the rows each member never saw
    outputs = np.full((len(members), len(train_rows), manifest.num_outputs), np.nan)
    for k, member in enumerate(members):
        rows = np.flatnonzero(out[k])
        outputs[k, rows] = predict_frame(member.load(), train_rows.iloc[rows], manifest, workers=workers)
    combined = np.full(outputs.shape[1:], np.nan)
    patterns, groups = np.unique(out.T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        if not pattern.any():
            continue
        rows = np.flatnonzero(groups.reshape(-1) == g)
        weights = None if rule.weights is None else np.asarray(rule.weights)[pattern]
        combined[rows] = CombinationRule(rule.method, None if weights is None else tuple(weights)).combine(
            outputs[pattern][:, rows])
    return combined, out.any(axis=0)


def _without_origin(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if c not in ("origin", "index")]]
