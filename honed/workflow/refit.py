"""Use all the labelled data at the end: the run the workflow chose on validation, trained again on train +
validation with the settings and the epoch count its validation run found (AutoGluon's ``refit_full``).

The refit has no validation split, so nothing selects on it: it trains exactly the chosen epochs and its last
weights are the model. Its folder (``refit.json``), ledger row (kind ``refit``) and bundle say so and keep the
validation score of the run it refits; the test split, when there is one, scores both.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import replace
from pathlib import Path

from honed.artifacts.run_folder import REFIT_FILE, RunFolder
from honed.config import RunConfig
from honed.metrics import best_epoch_row
from honed.progress import Reporter
from honed.tracking.atomic import write_json
from honed.tracking.ledger import Ledger
from honed.training.fit import train
from honed.training.result import TrainResult
from honed.workflow.context import Context
from honed.workflow.state import Step

REFIT_KIND = "refit"  # the ledger kind of a refit: not a candidate for ensembles or the leaderboard's best


def refit_config(config: RunConfig, *, epochs: int, name: str) -> RunConfig:
    """``config`` trained on train + val for ``epochs`` with no validation: no early stopping, nothing selected."""
    refit = copy.deepcopy(config)
    refit.name, refit.parent = name, config.name
    refit.data.validation, refit.data.folds, refit.data.fold = False, 1, 0
    refit.train.epochs, refit.train.patience = epochs, 0
    refit.change = f"refit on train+val: {config.name}'s settings for its {epochs} epoch(s), no validation"
    return refit


def chosen_epochs(run: RunFolder) -> int:
    """The epoch count the validation run found: its best epoch, ties going to the lower validation loss
    (``honed.metrics.better_epoch``; a probe fits once: 1)."""
    history, metric = run.history(), run.config().main_metric()
    if history is None or metric not in history or history.empty:
        return max(run.config().train.epochs, 1)
    return int(best_epoch_row((row for _, row in history.iterrows()), metric)["epoch"])


def why_not_refit(run_dir: Path) -> str:
    """Why the run cannot be refitted ('' when it can)."""
    run = RunFolder(run_dir)
    if not run.is_run or run.is_ensemble:
        return f"{run_dir.name} is not a single trained run (an ensemble's members would each need a refit)"
    config = run.config()
    if config.train.swa or config.train.schedule == "cyclic":
        return f"{run_dir.name} uses --swa or a cyclic schedule, which evaluate on the validation split"
    return ""


def refit_run(run_dir: Path, *, name: str, reporter: Reporter | None = None) -> TrainResult:
    """Train ``run_dir``'s config again on its own train + val images for its chosen epochs, as run ``name``;
    recorded as a refit that keeps the validation score of ``run_dir``."""
    run = RunFolder(run_dir)
    config, manifest = run.config(), run.manifest()
    metric = config.main_metric()
    with Ledger(run_dir.parent) as ledger:
        record = ledger.get(run_dir.name)
    validation_score = record.score if record is not None else None
    epochs = chosen_epochs(run)
    refit = refit_config(config, epochs=epochs, name=name)
    if validation_score is not None:
        refit.change += f" ({metric} {validation_score:.4f} on validation, kept from {run_dir.name})"
    result = train(refit, manifest=manifest, reporter=reporter)
    facts = {"refit_of": run_dir.name, "metric": metric, "validation_score": validation_score, "epochs": epochs,
             "train_images": int(manifest.frame["split"].isin(["train", "val"]).sum()),
             "validation_images_added": int((manifest.frame["split"] == "val").sum()),
             "test": result.metrics.get(f"test_{metric}"),
             "validation_run_test": (record.metrics.get(f"test_{metric}") if record is not None else None)}
    write_json(result.run_dir / REFIT_FILE, facts)
    with Ledger(run_dir.parent) as ledger:  # marked as a refit; its score stays None: it has no validation
        row = ledger.get(name)
        ledger.upsert(replace(row, kind=REFIT_KIND, metrics={**row.metrics, f"validation_{metric}": validation_score,
                                                             "refit_epochs": epochs}))
    return result


def refit_best(ctx: Context) -> str:
    """The run the export ships: the refit of the workflow's best run (the ``refit`` step), or the best run
    itself with --no-refit, when it cannot be refitted, or when the budget has no room for it."""
    best = ctx.state.best
    done = ctx.state.done("refit")
    if done is not None:
        return done.run if done.status == "done" else best
    reason = "--no-refit" if not ctx.spec.refit else why_not_refit(ctx.workspace / best)
    estimate = 0.0 if reason else _estimate(ctx.workspace, best)
    if not reason and not ctx.budget.allows(estimate, runs_done=ctx.state.trained_runs()):
        reason = f"budget: about {estimate:.0f}s needed, {ctx.budget.remaining():.0f}s left"
    if reason:
        ctx.skip("refit", f"the export ships {best}, selected on validation ({reason})")
        return best
    name = ctx.run_name("refit")
    if ctx.state.step("refit") is not None:  # an interrupted refit starts over (it is one training run)
        shutil.rmtree(ctx.workspace / name, ignore_errors=True)
        with Ledger(ctx.workspace) as ledger:
            ledger.delete(name)
    started = time.perf_counter()
    ctx.state.put(Step("refit", "running", run=name, parent=best))
    ctx.save()
    ctx.reporter.message(f"[bold]refit[/]: training {name} on train+val with {best}'s settings")
    result = refit_run(ctx.workspace / best, name=name, reporter=ctx.reporter)
    facts = RunFolder(result.run_dir).refit_facts() or {}
    test = "" if facts.get("test") is None else f"; test {ctx.metric} {facts['test']:.4f}"
    if test and facts.get("validation_run_test") is not None:
        test += f" ({best}: {facts['validation_run_test']:.4f})"
    step = Step("refit", "done", run=name, parent=best, seconds=time.perf_counter() - started,
                change=f"refit on train+val: {best} for {facts['epochs']} epoch(s) on {facts['train_images']} "
                       f"images{test}", details={"runs": 1, **facts})
    ctx.finish_step(step)  # never kept as the best: it has no validation score to compare
    return name


def _estimate(workspace: Path, run: str) -> float:
    """Seconds the refit should take: the validation run's time, scaled by its images and epochs."""
    folder = RunFolder(workspace / run)
    with Ledger(workspace) as ledger:
        record = ledger.get(run)
    seconds = record.duration_s if record is not None else 0.0
    frame = folder.manifest().frame
    images = frame["split"].isin(["train", "val"]).sum() / max(int((frame["split"] == "train").sum()), 1)
    history = folder.history()
    ran = len(history) if history is not None and len(history) else 1
    return float(seconds * images * chosen_epochs(folder) / ran)
