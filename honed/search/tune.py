"""``tune``: a hyperparameter search whose trials are ordinary honed runs, in an Optuna study that any number
of worker processes (on any number of machines) join by storage URL and study name.

Each trial trains one run named ``<base>-t<N>`` (N: the Optuna trial number, unique in the study, so workers
never collide on a name), records it in the workspace ledger with the drawn values as its change, and reports
each epoch's validation metric to the study's pruner. A re-run of the same study resumes it: finished trials
(complete or pruned) are kept and only the rest of the requested total is run.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import pandas as pd

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.search.pruning import TrialReporter
from honed.search.space import SearchSpace, apply_params
from honed.tracking.ledger import Ledger
from honed.tracking.ledger_db import configured_url, ledger_url, normalize_url
from honed.progress import LogReporter, Reporter

STORAGE_FILE = "optuna.sqlite3"  # the default study storage, in the workspace
HEARTBEAT_S = 30  # a running trial's heartbeat; one silent for GRACE_S (its worker died) is marked failed
GRACE_S = 120
OPEN_ATTEMPTS = 5  # opening a storage that another worker is creating at the same moment
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
LIVE = FINISHED + (optuna.trial.TrialState.RUNNING,)


@dataclass
class TuneResult:
    best_run: str  # the run of the best complete trial
    best_score: float  # its validation score (the base config's main metric)
    best_params: dict
    trials: pd.DataFrame  # one row per trial of the study: number, run, state, value, params, duration_s
    study_name: str
    storage: str


class _Surplus(Exception):
    """Raised in a trial that another worker's trials already made unnecessary (the total is reached)."""


def default_storage(workspace: str | Path) -> str:
    """The workspace's ledger database when one is set (``--ledger`` / HONED_LEDGER: a team shares the search
    and its record), else SQLite in the workspace: every process that shares the workspace joins the study."""
    if configured_url():
        return ledger_url(workspace)
    return f"sqlite:///{(Path(workspace).resolve() / STORAGE_FILE).as_posix()}"


def tune(base: RunConfig, *, trials: int | None, timeout_s: float | None, storage: str | None = None,
         study_name: str = "", space: SearchSpace | None = None, manifest: Manifest | None = None,
         reporter: Reporter | None = None, pruner: optuna.pruners.BasePruner | None = None) -> TuneResult:
    """Search ``space`` around ``base`` until the study holds ``trials`` finished trials (all workers
    together) or ``timeout_s`` passed (the trial under way finishes), and return the best complete trial.

    ``storage``: an Optuna storage URL (default: the ledger's database when ``HONED_LEDGER`` names one, else
    SQLite in the workspace; ``postgresql://...`` for workers on several machines). ``study_name`` (default: the base run's name) is what workers join by.
    """
    if trials is None and timeout_s is None:
        raise HonedError("give a number of trials (--trials) or a time budget (--timeout-s), or both")
    if trials is not None and trials < 1:
        raise HonedError(f"--trials must be at least 1, not {trials}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise HonedError("tune runs one process per worker, not under torchrun: start several `honed tune` "
                         "workers with the same --study instead (one per GPU with --device cuda:N)")
    from honed.advise.auto import advice_callbacks, resolve_strategy  # imports the training stack

    reporter = reporter or LogReporter()
    space = space or SearchSpace()
    base, advice = resolve_strategy(base, manifest, reporter)  # --strategy auto: decided once, for every trial
    callbacks = advice_callbacks(advice)
    metric = base.main_metric()
    Path(base.workspace).mkdir(parents=True, exist_ok=True)
    storage = normalize_url(storage) if storage else default_storage(base.workspace)
    study_name = study_name or base.name
    study = _open_study(storage, study_name, metric, pruner)
    started = time.monotonic()
    while True:
        with warnings.catch_warnings():  # trials of dead workers (heartbeat older than GRACE_S) fail
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        if trials is not None and _count(study, FINISHED) >= trials:
            break
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            reporter.message(f"time budget of {timeout_s:g}s spent: no new trial started")
            break
        if trials is not None and _count(study, LIVE) >= trials:
            break  # the remaining trials are under way in other workers
        surplus: list[bool] = []
        study.optimize(lambda trial: _run_trial(trial, base, space, study_name, metric, trials, manifest,
                                                reporter, surplus, callbacks),
                       n_trials=1, catch=(_Surplus,))
        if surplus:
            break
    return _result(study, storage, study_name, metric)


def _open_study(storage: str, study_name: str, metric: str, pruner) -> optuna.Study:
    direction = "maximize" if GREATER_IS_BETTER[metric] else "minimize"
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what marks dead trials
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                                 heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            break
        except (ImportError, ModuleNotFoundError) as error:
            raise HonedError(f"the storage {storage!r} needs a database driver that is not installed ({error}): "
                             "for PostgreSQL, pip install 'honed[team]'") from None
        except Exception as error:  # a bad URL, an unreachable server: SQLAlchemy's many error types
            if attempt + 1 == OPEN_ATTEMPTS or not _creation_race(error):
                raise HonedError(f"cannot open the study storage {storage!r}: {error}") from None
            time.sleep(0.2 * (attempt + 1) * (1 + random.random()))  # another worker is creating the tables
    study = optuna.create_study(storage=rdb, study_name=study_name, direction=direction, load_if_exists=True,
                                pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2))
    if study.direction.name.lower() != direction:
        raise HonedError(f"study {study_name!r} in {storage} {study.direction.name.lower()}s, but {metric} is to "
                         f"{direction}: give another --study or the metric it was started with")
    return study


def _creation_race(error: Exception) -> bool:
    """Two workers creating a new storage's tables at once: one loses with a constraint or lock error, and
    opening again finds the tables the other made."""
    text = f"{type(error).__name__} {error}".lower()
    return any(word in text for word in ("integrityerror", "unique constraint", "already exists", "locked"))


def _run_trial(trial: optuna.Trial, base: RunConfig, space: SearchSpace, study_name: str, metric: str,
               trials: int | None, manifest: Manifest | None, reporter: Reporter, surplus: list[bool],
               callbacks: list) -> float:
    from honed.training.fit import train

    if trials is not None and _count(trial.study, LIVE, before=trial.number) >= trials:
        surplus.append(True)  # workers asked for trials at the same moment: this one is beyond the total
        trial.set_user_attr("surplus", True)
        raise _Surplus()
    config = apply_params(base, space.suggest(trial), name=f"{base.name}-t{trial.number}", study=study_name,
                          number=trial.number)
    trial.set_user_attr("run", config.name)
    reporter.message(f"trial {trial.number}: {config.change}")
    watcher = TrialReporter(reporter, trial, metric)
    try:
        result = train(config, manifest=manifest, reporter=watcher, callbacks=callbacks)
    except optuna.TrialPruned:
        _mark_pruned(Path(config.workspace), config.name, watcher.last_epoch)
        reporter.message(f"trial {trial.number} ({config.name}) pruned after epoch {watcher.last_epoch}")
        raise
    return float(result.score)


def _mark_pruned(workspace: Path, name: str, epoch: int) -> None:
    """A pruned run keeps its best epoch so far, but did not finish: its ledger row says so."""
    with Ledger(workspace) as ledger:
        record = ledger.get(name)
        if record is not None:
            ledger.upsert(replace(record, status="interrupted",
                                  change=f"{record.change}; pruned by the tuner after epoch {epoch}"))


def _count(study: optuna.Study, states, *, before: int | None = None) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if before is None or t.number < before)


def _result(study: optuna.Study, storage: str, study_name: str, metric: str) -> TuneResult:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append({"number": t.number, "run": t.user_attrs.get("run", ""), "state": t.state.name.lower(),
                     "value": t.value, **{f"param_{k}": v for k, v in t.params.items()}, "duration_s": duration})
    table = pd.DataFrame(rows)
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not complete:
        raise HonedError(f"no trial of study {study_name!r} completed (all pruned, failed or still running): run "
                         "more trials, or fewer epochs per trial so the pruner has less to cut")
    best = study.best_trial
    return TuneResult(best_run=best.user_attrs["run"], best_score=float(best.value), best_params=dict(best.params),
                      trials=table, study_name=study_name, storage=storage)
