"""``improve_run``: the next run of the practice loop. It inherits a run's config, applies the fix its
analysis recommends (or the changes given by hand), records the run as its parent with what changed,
trains it and compares the two on the same validation split.

A recommended fix is checked before it is applied (:mod:`honed.analyze.candidates`): the top recommendations
are each fine-tuned briefly from the parent, the one that helps most is kept and continues from the parent for
the epochs it needs; the checks are runs in the ledger, and their scores are in the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from honed.analyze.candidates import (
    CONTROL,
    MAX_CANDIDATES,
    best_candidate,
    candidate_config,
    check_candidates,
    check_epochs,
    continued_epochs,
    from_analysis,
)
from honed.analyze.recommend import merge_policy
from honed.config import RunConfig
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER, best_epoch_row
from honed.artifacts.run_folder import CONFIG_FILE, METRICS_FILE
from honed.progress import Reporter

if TYPE_CHECKING:  # training pulls in the model zoo: imported when a run is trained, not with honed.analyze
    from honed.training.result import TrainResult

COMPARED = ("accuracy", "macro_f1", "log_loss", "mae", "rmse", "val_loss", "train_loss")


def improve_run(run_dir: str | Path, *, augment: str | None = None, dropout: float | None = None,
                weight_decay: float | None = None, epochs: int | None = None, name: str = "",
                reporter: Reporter | None = None, analyze_options: dict[str, Any] | None = None,
                check: int = MAX_CANDIDATES, image_size: int | None = None) -> tuple[TrainResult, dict]:
    """Train a child of ``run_dir`` with the recommended fix, or with the given changes when any is given.

    ``augment`` is added to the parent's policy (an augmentation already there takes the new strength);
    ``dropout``, ``weight_decay`` and ``image_size`` (the input side) replace the parent's; ``epochs`` defaults
    to the parent's. With none of augment/dropout/weight_decay/image_size, the fix comes from
    ``RUN/analysis/analysis.json``, running the analysis first (with ``analyze_options``) when there is none:
    its top ``check`` recommendations are checked by short fine-tunes and the best that beats the parent is
    applied, continuing from the parent's weights (``epochs`` then overrides the continuation's length).
    Returns the child's result and a comparison dict (with the checked ``candidates`` and the ``kept`` one).
    """
    from honed.training.fit import train

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise HonedError(f"{run_dir} is not a honed run (no {CONFIG_FILE}): give a run name or folder, "
                         "see `honed runs`")
    parent = RunConfig.from_yaml(run_dir / CONFIG_FILE)
    if augment is None and dropout is None and weight_decay is None and image_size is None:
        return _improve_checked(run_dir, parent, epochs=epochs, name=name, reporter=reporter,
                                analyze_options=analyze_options or {}, check=check)
    config, change = child_config(parent, run_dir, augment=augment, dropout=dropout, weight_decay=weight_decay,
                                  epochs=epochs, name=name, image_size=image_size)
    if reporter is not None:
        reporter.message(f"{config.name}: {change}")
    result = train(config, reporter=reporter)
    return result, compare(run_dir, result, change)


def _improve_checked(run_dir: Path, parent: RunConfig, *, epochs: int | None, name: str,
                     reporter: Reporter | None, analyze_options: dict, check: int) -> tuple[TrainResult, dict]:
    """Check the top recommendations by short fine-tunes; continue from the parent with the best that helps."""
    from honed.training.fit import train

    found = from_analysis(_recommended(run_dir, analyze_options, reporter), limit=max(check, 1))
    if not found:
        raise HonedError(f"the analysis of {run_dir.name} found no significant weakness to fix: give the changes "
                         "by hand with --augment, --dropout or --weight-decay")
    metric = parent.main_metric()
    parent_score = best_metrics(run_dir, metric)[metric]
    results: dict[str, TrainResult] = {}

    def run(config: RunConfig) -> TrainResult:
        if reporter is not None:
            reporter.message(f"{config.name}: {config.change}")
        results[config.name] = train(config, reporter=reporter)
        return results[config.name]

    short = check_epochs(parent)
    checked = check_candidates(run_dir, found, epochs=short, train=run,
                               name=lambda c: _free_name(run_dir.parent, f"{run_dir.name}-check-{c.group}"))
    if not any(c.group != CONTROL for c in checked):
        raise HonedError(f"every fix the analysis of {run_dir.name} recommends is already in the run: give the "
                         "changes by hand with --augment, --dropout or --weight-decay")
    winner = best_candidate(checked, parent_score=parent_score, metric=metric, workspace=run_dir.parent)
    record = {"candidates": [c.to_dict() for c in checked], "check_epochs": short, "parent_score": parent_score}
    if winner is None:  # nothing helped: no full run; the best check is what there is to compare
        sign = 1 if GREATER_IS_BETTER[metric] else -1
        best = max((c for c in checked if c.group != CONTROL), key=lambda c: sign * c.check_score)
        result = results[best.check_run]
        return result, {**compare(run_dir, result, result.config.change), **record, "kept": ""}
    config = candidate_config(parent, run_dir, winner, epochs=epochs or continued_epochs(parent, winner),
                              name=name or _free_name(run_dir.parent, f"{run_dir.name}-improved"))
    result = run(config)
    return result, {**compare(run_dir, result, config.change), **record, "kept": winner.group}


def child_config(parent: RunConfig, run_dir: Path, *, augment: str | None, dropout: float | None,
                 weight_decay: float | None, epochs: int | None, name: str, lr: float | None = None,
                 image_size: int | None = None, weights: str = "") -> tuple[RunConfig, str]:
    """The parent's config with the changes applied, validated, named, and the change in words."""
    raw = parent.to_dict()
    changes = []
    if augment:
        merged = merge_policy(parent.train.augment, [augment])
        raw["train"]["augment"] = merged
        changes.append(f"augment: {parent.train.augment or '(none)'} -> {merged}" if parent.train.augment
                       else f"augment: +{merged}")
    for section, key, value, label in (("model", "drop_rate", dropout, "dropout"),
                                       ("train", "weight_decay", weight_decay, "weight_decay"),
                                       ("train", "epochs", epochs, "epochs"), ("train", "lr", lr, "lr"),
                                       ("preprocess", "image_size", image_size, "image size")):
        if value is not None and value != raw[section][key]:
            changes.append(f"{label} {raw[section][key]:g} -> {value:g}")
            raw[section][key] = value
    if not changes:
        raise HonedError("nothing to change: give --augment, --dropout, --weight-decay or --epochs different from "
                         f"the run's ({parent.train.augment or 'no augmentation'}, dropout {parent.model.drop_rate:g}, "
                         f"weight decay {parent.train.weight_decay:g}, {parent.train.epochs} epochs)")
    if weights:  # continuing from the parent is a way of starting, not a change in itself
        raw["model"]["weights"] = weights
        changes.append(f"from {run_dir.name}'s weights")
    workspace = run_dir.parent
    raw.update(name=name or _free_name(workspace, f"{run_dir.name}-improved"), workspace=str(workspace),
               parent=run_dir.name, change="; ".join(changes))
    raw["data"]["skipped_files"] = 0
    return RunConfig.from_dict(raw), raw["change"]


def compare(run_dir: Path, result: TrainResult, change: str) -> dict:
    """Before/after on the shared validation split: the parent's best epoch against the child's."""
    before = best_metrics(run_dir, result.metric)
    after = {k: float(v) for k, v in result.metrics.items() if k in COMPARED or k.startswith("test_")}
    keys = [k for k in after if k in before]
    return {"parent": run_dir.name, "child": result.name, "metric": result.metric, "change": change,
            "greater_is_better": GREATER_IS_BETTER[result.metric],
            "before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys},
            "delta": {k: after[k] - before[k] for k in keys}}


def best_metrics(run_dir: Path, metric: str) -> dict[str, float]:
    """The run's metrics at its best epoch (metrics.csv), plus test metrics from the ledger when present."""
    import pandas as pd

    from honed.tracking.ledger import Ledger, has_ledger

    out: dict[str, float] = {}
    if (run_dir / METRICS_FILE).exists():
        history = pd.read_csv(run_dir / METRICS_FILE)
        best = best_epoch_row(history.to_dict("records"), metric) or {}
        out = {k: float(v) for k, v in best.items() if k in COMPARED}
    if has_ledger(run_dir.parent):
        with Ledger(run_dir.parent) as ledger:
            record = ledger.get(run_dir.name)
        if record is not None:
            out.update({k: float(v) for k, v in record.metrics.items() if k.startswith("test_")})
    return out


def _recommended(run_dir: Path, analyze_options: dict, reporter: Reporter | None) -> dict:
    """The run's saved analysis, analyzing it first when there is none."""
    from honed.analyze.analysis import analyze_run
    from honed.analyze.outputs import read_analysis

    saved = read_analysis(run_dir)
    if saved is None:
        if reporter is not None:
            reporter.message(f"no analysis of {run_dir.name} yet: analyzing it first")
        saved = analyze_run(run_dir, reporter=reporter, **analyze_options).to_dict()
    return saved


def _free_name(workspace: Path, prefix: str) -> str:
    from honed.tracking.ledger import Ledger

    with Ledger(workspace) as ledger:
        name = ledger.new_name(prefix)
        number = 2
        while (workspace / name).exists() or ledger.get(name) is not None:  # e.g. a folder left by a crash
            name = f"{prefix}-{number}"
            number += 1
    return name
