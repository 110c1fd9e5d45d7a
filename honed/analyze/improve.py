"""``improve_run``: the next run of the practice loop. It inherits a run's config, applies the fix its
analysis recommends (or the changes given by hand), records the run as its parent with what changed,
trains it and compares the two on the same validation split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from honed.analyze.recommend import merge_policy
from honed.config import RunConfig
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.artifacts.run_folder import CONFIG_FILE, METRICS_FILE
from honed.progress import Reporter

if TYPE_CHECKING:  # training pulls in the model zoo: imported when a run is trained, not with honed.analyze
    from honed.training.result import TrainResult

COMPARED = ("accuracy", "macro_f1", "log_loss", "mae", "rmse", "val_loss", "train_loss")


def improve_run(run_dir: str | Path, *, augment: str | None = None, dropout: float | None = None,
                weight_decay: float | None = None, epochs: int | None = None, name: str = "",
                reporter: Reporter | None = None, analyze_options: dict[str, Any] | None = None,
                ) -> tuple[TrainResult, dict]:
    """Train a child of ``run_dir`` with the recommended fix, or with the given changes when any is given.

    ``augment`` is added to the parent's policy (an augmentation already there takes the new strength);
    ``dropout`` and ``weight_decay`` replace the parent's; ``epochs`` defaults to the parent's. With none of
    augment/dropout/weight_decay, the fix comes from ``RUN/analysis/analysis.json``, running the analysis
    first (with ``analyze_options``) when there is none. Returns the child's result and a comparison dict.
    """
    from honed.training.fit import train

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise HonedError(f"{run_dir} is not a honed run (no {CONFIG_FILE}): give a run name or folder, "
                         "see `honed runs`")
    parent = RunConfig.from_yaml(run_dir / CONFIG_FILE)
    if augment is None and dropout is None and weight_decay is None:
        augment, dropout, weight_decay = _recommended(run_dir, analyze_options or {}, reporter)
    config, change = child_config(parent, run_dir, augment=augment, dropout=dropout, weight_decay=weight_decay,
                                  epochs=epochs, name=name)
    if reporter is not None:
        reporter.message(f"{config.name}: {change}")
    result = train(config, reporter=reporter)
    return result, compare(run_dir, result, change)


def child_config(parent: RunConfig, run_dir: Path, *, augment: str | None, dropout: float | None,
                 weight_decay: float | None, epochs: int | None, name: str) -> tuple[RunConfig, str]:
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
                                       ("train", "epochs", epochs, "epochs")):
        if value is not None and value != raw[section][key]:
            changes.append(f"{label} {raw[section][key]:g} -> {value:g}")
            raw[section][key] = value
    if not changes:
        raise HonedError("nothing to change: give --augment, --dropout, --weight-decay or --epochs different from "
                         f"the run's ({parent.train.augment or 'no augmentation'}, dropout {parent.model.drop_rate:g}, "
                         f"weight decay {parent.train.weight_decay:g}, {parent.train.epochs} epochs)")
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
        best = history[metric].idxmax() if GREATER_IS_BETTER[metric] else history[metric].idxmin()
        out = {k: float(v) for k, v in history.loc[best].items() if k in COMPARED}
    if has_ledger(run_dir.parent):
        with Ledger(run_dir.parent) as ledger:
            record = ledger.get(run_dir.name)
        if record is not None:
            out.update({k: float(v) for k, v in record.metrics.items() if k.startswith("test_")})
    return out


def _recommended(run_dir: Path, analyze_options: dict, reporter: Reporter | None
                 ) -> tuple[str | None, float | None, float | None]:
    from honed.analyze.analysis import analyze_run
    from honed.analyze.outputs import read_analysis

    saved = read_analysis(run_dir)
    if saved is None:
        if reporter is not None:
            reporter.message(f"no analysis of {run_dir.name} yet: analyzing it first")
        saved = analyze_run(run_dir, reporter=reporter, **analyze_options).to_dict()
    recommended = saved.get("recommended", {})
    policy, regularization = recommended.get("policy", ""), recommended.get("regularization", {})
    if not policy and not regularization:
        raise HonedError(f"the analysis of {run_dir.name} found no significant weakness to fix: give the changes "
                         "by hand with --augment, --dropout or --weight-decay")
    return policy or None, regularization.get("drop_rate"), regularization.get("weight_decay")


def _free_name(workspace: Path, prefix: str) -> str:
    from honed.tracking.ledger import Ledger

    with Ledger(workspace) as ledger:
        name = ledger.new_name(prefix)
        number = 2
        while (workspace / name).exists() or ledger.get(name) is not None:  # e.g. a folder left by a crash
            name = f"{prefix}-{number}"
            number += 1
    return name
