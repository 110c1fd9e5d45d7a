"""Boosting with neural members: AdaBoost's multi-class SAMME, training each round on a re-sample by weight.

Round k draws n training rows with probability w (uniform in the first round), trains a member on them,
and measures its weighted error on the whole training split: err = sum(w * wrong) / sum(w). Its vote counts
alpha = log((1 - err) / err) + log(C - 1), and the rows it got wrong gain weight: w *= exp(alpha * wrong).
A member no better than chance (err >= 1 - 1/C) ends the boosting without joining; a perfect one
(err = 0) joins with alpha 1 and ends it (nothing is left to re-weight). The ensemble is a hard vote
weighted by alpha (method "samme"). Re-sampling, not weighting the loss, keeps the training loop unchanged.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.ensemble.build import build_ensemble
from honed.ensemble.members import Member
from honed.ensemble.resample import ensemble_name, predict_frame, prepared_manifest, train_member, with_training_rows
from honed.ensemble.store import EnsembleResult
from honed.errors import HonedError
from honed.progress import LogReporter, Reporter
from honed.tasks import get_task

RESAMPLE_FILE = "resample.parquet"
BOOST_METHODS = ("samme", "gbm")


def samme_alpha(error: float, classes: int) -> float:
    """A round's vote: log((1 - err) / err) + log(C - 1); positive exactly when the member beats chance."""
    return math.log((1 - error) / error) + math.log(classes - 1)


def boost(config: RunConfig, *, rounds: int = 5, method: str = "samme", manifest: Manifest | None = None,
          reporter: Reporter | None = None, workers: int = 0) -> EnsembleResult:
    """AdaBoost (SAMME) over ``rounds`` neural members, or (``method="gbm"``) gradient boosting on frozen
    features, saved as a gbm probe run that predicts (see ``honed.ensemble.gbm``). ``config`` holds the members'
    shared training settings (gbm: the backbone, preprocessing and DataLoader workers)."""
    if method not in BOOST_METHODS:
        raise HonedError(f"unknown boosting method {method!r}: use {' or '.join(BOOST_METHODS)}")
    if method == "gbm":
        from honed.ensemble.gbm import boost_gbm

        return boost_gbm(config, rounds=rounds, manifest=manifest, reporter=reporter)
    if not get_task(config.data.task).is_classification:
        raise HonedError("SAMME boosting is for classification: for regression use --method gbm or `honed bag`")
    if rounds < 1:
        raise HonedError(f"--rounds must be at least 1, not {rounds}")
    started = time.perf_counter()
    reporter = reporter or LogReporter()
    name = ensemble_name(config, "boost")
    prepared = prepared_manifest(config, manifest)
    train_rows = prepared.split("train")
    n, classes = len(train_rows), len(prepared.classes)
    targets = prepared.targets(train_rows)
    rng = np.random.default_rng(config.train.seed)
    weights = np.full(n, 1.0 / n)
    team, alphas, rounds_log, draws = [], [], [], {}
    for k in range(rounds):
        drawn = rng.choice(n, size=n, replace=True, p=weights)
        reporter.message(f"boosting round {k + 1}/{rounds}")
        result = train_member(config, f"{name}-r{k}", with_training_rows(prepared, drawn),
                              change=f"boosting round {k + 1}/{rounds}: training rows re-sampled by weight "
                                     f"(boost {name})", seed=config.train.seed + k, reporter=reporter)
        member = Member(result.name, result.run_dir)
        wrong = predict_frame(member.load(), train_rows, prepared, workers=workers).argmax(axis=1) != targets
        error = float(weights[wrong].sum() / weights.sum())
        record = {"round": k + 1, "member": member.name, "weighted_error": error}
        if error >= 1 - 1 / classes:
            rounds_log.append({**record, "alpha": None, "joined": False})
            reporter.message(f"round {k + 1}: weighted error {error:.3f} is no better than chance; boosting stops")
            break
        alpha = 1.0 if error <= 0 else samme_alpha(error, classes)
        team.append(member)
        alphas.append(alpha)
        draws[f"count:{member.name}"] = np.bincount(drawn, minlength=n)
        rounds_log.append({**record, "alpha": alpha, "joined": True})
        if error <= 0:
            reporter.message(f"round {k + 1}: no training error left; boosting stops")
            break
        weights = weights * np.exp(alpha * wrong)
        weights /= weights.sum()
    if not team:
        raise HonedError("the first boosting round was no better than chance: train longer (--epochs) or "
                         "check the data")
    total = sum(alphas)
    return build_ensemble(team, kind="boost", name=name, method="samme", workspace=Path(config.workspace),
                          parent=team[0].name, base_config=config, started=started,
                          weights=np.asarray(alphas) / total,
                          change=f"AdaBoost (SAMME): {len(team)} members re-sampled by weight",
                          details={"rounds": rounds_log, "alphas": alphas, "seed": config.train.seed},
                          tables={RESAMPLE_FILE: pd.DataFrame({"path": train_rows["path"].tolist(), **draws})},
                          manifest_frame=prepared.frame[[c for c in prepared.frame.columns
                                                         if c not in ("origin", "index")]])
