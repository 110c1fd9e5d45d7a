"""Bagging: K members, each trained on a bootstrap sample of the training split (n rows drawn with
replacement), all validated on the same validation split, combined by vote.

The out-of-bag (OOB) score uses the training images themselves: each is scored by the members whose
bootstrap sample did not draw it (about 37% of them each), combined by the bag's own rule. Rows that every
member drew have no OOB prediction; the coverage says how many did. The draws are saved
(bootstrap.parquet: one count column per member) next to the OOB predictions (oob_predictions.parquet).

``bag`` trains the members one after another; ``bag_worker`` is one of several processes sharing the
workspace, each claiming members not yet taken (see ``claim``), the last one done assembling the bag.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.ensemble.build import build_ensemble
from honed.combine.rules import CombinationRule, default_method, get_method
from honed.ensemble.members import Member
from honed.ensemble.resample import (
    ensemble_name,
    predict_frame,
    prepared_manifest,
    train_member,
    with_training_rows,
)
from honed.ensemble.store import ENSEMBLE_FILE, EnsembleResult
from honed.errors import HonedError
from honed.combine.scoring import score
from honed.tracking.ledger import Ledger
from honed.artifacts.run_folder import CONFIG_FILE
from honed.artifacts.predictions import predictions_table
from honed.progress import LogReporter, Phase, Reporter

BOOTSTRAP_FILE = "bootstrap.parquet"
OOB_FILE = "oob_predictions.parquet"


def bootstrap_counts(n: int, members: int, seed: int) -> np.ndarray:
    """``[members, n]``: how often each member's bootstrap sample drew each training row."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(members)])


@dataclass
class BagPlan:
    """What every member of one bag shares, derived the same way in every worker (from the config's seed)."""

    name: str
    method: str
    members: int
    prepared: Manifest  # the data with its validation split fixed once
    counts: np.ndarray  # [members, n]: bootstrap draws of the training rows

    def member_name(self, k: int) -> str:
        return f"{self.name}-b{k}"


@dataclass
class WorkerResult:
    """What one ``bag_worker`` did: the members it trained, those still pending, and the bag if it built it."""

    name: str
    trained: list[str]
    pending: list[str]  # claimed by other workers and not done yet
    ensemble: EnsembleResult | None  # set in the worker that assembled the bag


def bag(config: RunConfig, *, members: int = 5, method: str = "auto", manifest: Manifest | None = None,
        reporter: Reporter | None = None, workers: int = 0) -> EnsembleResult:
    """Train ``members`` runs on bootstrap samples and save them as an ensemble run with its OOB score.

    ``config`` holds the training settings shared by the members (``config.name`` names the ensemble;
    members are NAME-b0, NAME-b1, ...). ``method``: soft or hard (classification), mean (regression).
    """
    started = time.perf_counter()
    reporter = reporter or LogReporter()
    plan = plan_bag(config, members=members, method=method, manifest=manifest)
    for k in range(members):
        _train_member(plan, config, k, reporter)
    return _assemble(plan, config, reporter, started=started, workers=workers)


def bag_worker(config: RunConfig, *, members: int = 5, method: str = "auto", manifest: Manifest | None = None,
               reporter: Reporter | None = None, workers: int = 0, resume: bool = False) -> WorkerResult:
    """One of several processes (on one or several machines sharing the workspace) training one bag.

    Each member is claimed before it is trained, by creating ``<workspace>/.claims/<bag>/<member>.<n>``
    exclusively (O_EXCL: exactly one process succeeds), so workers split the members between them. The
    worker that finds every member done assembles the bag (claimed the same way). ``resume`` retakes the
    claims of workers that are gone (a process no longer running on this machine, or any claim made on
    another machine: start ``--resume`` workers only after the crashed ones stopped) and continues their
    members from their last finished epoch.
    """
    started = time.perf_counter()
    reporter = reporter or LogReporter()
    if not config.name:
        raise HonedError("--worker needs --name: the workers of one bag find each other by its name")
    workspace = Path(config.workspace)
    if (workspace / config.name / ENSEMBLE_FILE).is_file():
        raise HonedError(f"bag {config.name!r} is already assembled in {workspace}: see `honed show {config.name}`")
    plan = plan_bag(config, members=members, method=method, manifest=manifest)
    claims = workspace / CLAIMS_DIR / plan.name
    trained = []
    for k in range(members):
        member = plan.member_name(k)
        if _is_done(workspace, member) or not claim(claims, member, resume=resume):
            continue
        _train_member(plan, config, k, reporter, resume=_prepare_retaken(workspace, member))
        trained.append(member)
    pending = [plan.member_name(k) for k in range(members) if not _is_done(workspace, plan.member_name(k))]
    if pending or not claim(claims, ASSEMBLE, resume=resume):
        return WorkerResult(plan.name, trained, pending, None)
    result = _assemble(plan, config, reporter, started=started, workers=workers)
    shutil.rmtree(claims, ignore_errors=True)
    with contextlib.suppress(OSError):
        claims.parent.rmdir()  # .claims itself, once no other bag uses it
    return WorkerResult(plan.name, trained, [], result)


def plan_bag(config: RunConfig, *, members: int, method: str, manifest: Manifest | None) -> BagPlan:
    """The bag's name, vote, split and draws: validated before any member trains."""
    if members < 2:
        raise HonedError(f"--members must be at least 2, not {members}")
    method = default_method(config.data.task) if method in ("", "auto") else method
    if get_method(method, config.data.task).fitted:
        raise HonedError(f"bagging combines its members by plain vote: use {default_method(config.data.task)} "
                         "or hard (weights could only be fitted on the validation rows the bag is scored on)")
    name = ensemble_name(config, "bag")
    prepared = prepared_manifest(config, manifest)
    counts = bootstrap_counts(len(prepared.split("train")), members, config.train.seed)
    return BagPlan(name, method, members, prepared, counts)


def _train_member(plan: BagPlan, config: RunConfig, k: int, reporter: Reporter, *, resume: bool = False):
    train_rows = plan.prepared.split("train")
    reporter.message(f"bag member {k + 1}/{plan.members}: {int((plan.counts[k] > 0).sum())} distinct of "
                     f"{len(train_rows)} training images" + (" (resumed)" if resume else ""))
    drawn = np.repeat(np.arange(len(train_rows)), plan.counts[k])
    rows = with_training_rows(plan.prepared, drawn)
    change = f"bootstrap sample {k + 1}/{plan.members} of the training split (bag {plan.name})"
    if not resume:
        return train_member(config, plan.member_name(k), rows, change=change, seed=config.train.seed + k,
                            reporter=reporter)
    from honed.training.fit import train

    member = copy.deepcopy(config)  # as train_member builds it, continued from the run's last epoch
    member.name, member.change, member.train.seed = plan.member_name(k), change, config.train.seed + k
    return train(member, manifest=rows, reporter=reporter, resume=True)


def _assemble(plan: BagPlan, config: RunConfig, reporter: Reporter, *, started: float,
              workers: int) -> EnsembleResult:
    """The out-of-bag score of the trained members, and the ensemble run."""
    workspace = Path(config.workspace)
    team = [Member(plan.member_name(k), workspace / plan.member_name(k)) for k in range(plan.members)]
    counts, prepared, method = plan.counts, plan.prepared, plan.method
    train_rows = prepared.split("train")
    rule = CombinationRule(method)
    reporter.message("scoring the training images out of bag")
    oob_outputs, covered = out_of_bag(team, counts, rule, train_rows, prepared, workers=workers, reporter=reporter)
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
    return build_ensemble(team, kind="bag", name=plan.name, method=method, workspace=workspace,
                          parent=team[0].name, base_config=config, started=started, extra_metrics=extra,
                          change=f"bagging: {plan.members} members on bootstrap samples, {method} vote",
                          details={"members": plan.members, "seed": config.train.seed, "oob": extra},
                          tables={BOOTSTRAP_FILE: draws, OOB_FILE: table},
                          manifest_frame=_without_origin(prepared.frame))


# ------------------------------------------------------------------------------- claims between workers

CLAIMS_DIR = ".claims"  # <workspace>/.claims/<bag>/: a leading '.' can never be a run's name
ASSEMBLE = "assemble"  # the claim on building the ensemble once every member is done


def claim(claims: Path, item: str, *, resume: bool = False) -> bool:
    """Claim ``item`` for this process; False when another worker holds it.

    Claims are files ``<item>.<n>`` created with O_EXCL, which exactly one process wins, also on NFS v3+.
    A first claim is ``<item>.0``; retaking a gone worker's claim ``<item>.<n>`` creates ``<item>.<n+1>``,
    so two workers retaking the same claim race on one new file and only one wins.
    """
    claims.mkdir(parents=True, exist_ok=True)
    held = sorted(int(p.suffix[1:]) for p in claims.glob(f"{item}.*") if p.suffix[1:].isdigit())
    if held and not (resume and not _holder_alive(claims / f"{item}.{held[-1]}")):
        return False
    path = claims / f"{item}.{held[-1] + 1 if held else 0}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "claimed": time.time()}, handle)
    return True


def _holder_alive(path: Path) -> bool:
    """Whether the process holding a claim still runs; claims from other machines cannot be checked and are
    taken as gone (so --resume is for after the crashed workers stopped)."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return False  # a claim its holder died while writing
    if holder.get("host") != socket.gethostname():
        return False
    if holder.get("pid") == os.getpid():
        return False  # this process's own claim, left by a member that raised: ours to retake
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _is_done(workspace: Path, name: str) -> bool:
    with Ledger(workspace) as ledger:
        record = ledger.get(name)
    return record is not None and record.status == "done"


def _prepare_retaken(workspace: Path, member: str) -> bool:
    """For a member retaken from a gone worker: True to resume its run, False to start it (the folder of a
    run that died before writing its config is removed, ledger row first, as for every run)."""
    run_dir = workspace / member
    if (run_dir / CONFIG_FILE).is_file():
        return True
    if run_dir.exists():
        with Ledger(workspace) as ledger:
            ledger.delete(member)
        shutil.rmtree(run_dir)
    return False


def out_of_bag(members: list[Member], counts: np.ndarray, rule: CombinationRule, train_rows: pd.DataFrame,
               manifest: Manifest, *, workers: int = 0,
               reporter: Reporter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """OOB outputs ``[n, C]`` (NaN where no member left the row out) and the mask of covered rows;
    ``reporter`` sees the predictions as one phase, advanced member by member."""
    out = counts == 0  # [M, n]: the rows each member never saw
    outputs = np.full((len(members), len(train_rows), manifest.num_outputs), np.nan)
    with Phase(reporter, f"{len(members)} members predicting their out-of-bag images", int(out.sum())) as phase:
        for k, member in enumerate(members):
            rows = np.flatnonzero(out[k])
            outputs[k, rows] = predict_frame(member.load(), train_rows.iloc[rows], manifest, workers=workers)
            phase(len(rows))
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
