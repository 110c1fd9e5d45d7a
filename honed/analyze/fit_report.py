"""Over- or under-fitting, read from a run's learning curves (``metrics.csv``), with the flags to try next.

    overfitting   the validation loss rose at least ``OVERFIT_RISE`` above its minimum while the training
                  loss kept falling, and the gap between them widened: the model is learning the training
                  images rather than the task -> --dropout, --weight-decay, --augment, --patience / fewer
                  --epochs, --label-smoothing
    underfitting  the training loss still falls steeply at the end (``STEEP_DROP`` per epoch over the last
                  quarter of the epochs) while validation follows it, or it ends high, above
                  ``HIGH_TRAIN_LOSS`` of the way from its floor to chance: more --epochs, a higher --lr, more
                  capacity (--model, --strategy full) or less regularization
    good fit      neither

Losses are cross-entropy (classification: chance is log C, and label smoothing raises the floor to the
entropy of the smoothed target) or squared error (regression: chance is the target variance, when known).
Mixup/cutmix train on mixed targets, so their training loss has no fixed floor: the "ends high" test is
skipped for them and the gap is read as a trend only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from honed.errors import HonedError
from honed.artifacts.run_folder import MANIFEST_FILE, METRICS_FILE
from honed.tasks import get_task

OVERFIT_RISE = 0.10  # validation loss this far (relative) above its minimum at the end: it turned
STEEP_DROP = 0.05  # relative training-loss drop per epoch over the last quarter: still learning
HIGH_TRAIN_LOSS = 0.5  # training loss this far from its floor towards chance: the model has not fitted
MIN_EPOCHS = 3  # fewer points than this are no curve
REPORT_FILE = "fit_report.json"


@dataclass
class FitReport:
    """A verdict on a run's learning curves, the numbers behind it and the flags to try."""

    verdict: str  # overfitting | underfitting | good fit | too short to tell
    evidence: list[str]
    suggestions: list[str]
    numbers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose_fit(history: pd.DataFrame, *, metric: str = "", task: str = "classify", num_classes: int = 0,
                 chance_loss: float | None = None, config=None) -> FitReport:
    """Read the curves in ``history`` (columns epoch, train_loss, val_loss and, optionally, the metric).

    ``config`` (a RunConfig) makes the suggestions concrete (current values, the model, the strategy);
    ``chance_loss`` overrides the loss of a guesser (log C for classification)."""
    for column in ("train_loss", "val_loss"):
        if column not in history:
            raise HonedError(f"the run's metrics.csv has no {column} column: it was not written by honed train")
    frame = history.sort_values("epoch") if "epoch" in history else history
    train = frame["train_loss"].to_numpy(float)
    val = frame["val_loss"].to_numpy(float)
    epochs = list(frame["epoch"]) if "epoch" in frame else list(range(1, len(frame) + 1))
    if len(train) < MIN_EPOCHS:
        return FitReport("too short to tell", [f"{len(train)} epoch(s): a curve needs {MIN_EPOCHS} or more"],
                         [f"--epochs {max(2 * len(train), 10)}"], {"epochs": float(len(train))})
    mixes = bool(config and _mixes(config.train.augment))
    smoothing = config.train.label_smoothing if config else 0.0
    classification = get_task(task).is_classification  # a guesser's loss is log C; smoothing raises the floor
    if chance_loss is None and classification and num_classes > 1:
        chance_loss = math.log(num_classes)
    floor = _smoothed_floor(smoothing, num_classes) if classification else 0.0

    best = int(np.argmin(val))
    rise = (val[-1] - val[best]) / max(abs(val[best]), 1e-8)
    gap_at_best, gap_end = val[best] - train[best], val[-1] - train[-1]
    tail = max(2, len(train) // 4)
    drop = (train[-tail - 1] - train[-1]) / max(abs(train[-tail - 1]), 1e-8) / tail
    val_drop = (val[-tail - 1] - val[-1]) / max(abs(val[-tail - 1]), 1e-8) / tail
    height = ((train[-1] - floor) / (chance_loss - floor) if chance_loss and chance_loss > floor and not mixes
              else float("nan"))
    numbers = {"epochs": float(len(train)), "best_val_epoch": float(epochs[best]), "val_loss_min": float(val[best]),
               "val_loss_end": float(val[-1]), "val_rise": float(rise), "train_loss_end": float(train[-1]),
               "gap_at_best": float(gap_at_best), "gap_end": float(gap_end), "train_drop_per_epoch": float(drop),
               "val_drop_per_epoch": float(val_drop), "train_loss_height": float(height)}
    if metric and metric in frame:
        numbers[f"{metric}_end"] = float(frame[metric].iloc[-1])
        numbers[f"{metric}_at_best_val_loss"] = float(frame[metric].iloc[best])
    notes = []
    if mixes:
        notes.append("mixup/cutmix train on mixed targets: the training loss is higher than the model's fit, so "
                     "only the trends are read")
    if smoothing:
        notes.append(f"label smoothing {smoothing:g} puts the training loss floor at {floor:.3f}")

    if best < len(val) - 1 and rise >= OVERFIT_RISE and train[-1] < train[best] and gap_end > gap_at_best:
        evidence = [f"validation loss lowest at epoch {epochs[best]} ({val[best]:.3f}), {rise:.0%} higher by "
                    f"epoch {epochs[-1]} ({val[-1]:.3f})",
                    f"training loss fell from {train[best]:.3f} to {train[-1]:.3f} meanwhile",
                    f"gap validation - training widened from {gap_at_best:.3f} to {gap_end:.3f}"]
        return FitReport("overfitting", evidence, _against_overfitting(config, epochs[best]), numbers, notes)
    steep = drop >= STEEP_DROP and val_drop > 0
    high = not math.isnan(height) and height >= HIGH_TRAIN_LOSS
    if steep or high:
        evidence = []
        if steep:
            evidence.append(f"training loss still falling {drop:.0%} per epoch over the last {tail} epochs "
                            f"(validation {val_drop:.0%}): the run stopped while learning")
        if high:
            evidence.append(f"training loss ends at {train[-1]:.3f}, {height:.0%} of the way from its floor "
                            f"({floor:.3f}) to chance ({chance_loss:.3f}): the model does not fit even the "
                            "training images")
        return FitReport("underfitting", evidence, _against_underfitting(config, steep=steep, high=high),
                         numbers, notes)
    evidence = [f"validation loss {val[-1]:.3f} within {max(rise, 0.0):.0%} of its minimum {val[best]:.3f} "
                f"(epoch {epochs[best]})", f"training loss flat at the end ({drop:.1%} per epoch)"]
    if not math.isnan(height):
        evidence.append(f"training loss {height:.0%} of the way from its floor to chance")
    return FitReport("good fit", evidence, ["nothing to fix in the curves; `--swa` may still add a little"],
                     numbers, notes)


def run_fit_report(run_dir: str | Path, *, save: bool = True) -> FitReport:
    """The fit report of a run folder (from ``metrics.csv``, ``config.yaml`` and ``labels.json``); with
    ``save`` it is written to ``RUN/fit_report.json``."""
    import json

    from honed.config import RunConfig
    from honed.tracking.atomic import write_json
    from honed.artifacts.run_folder import CONFIG_FILE, LABELS_FILE

    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        raise HonedError(f"run {run_dir.name} has no metrics.csv: it has not finished an epoch (probe runs have "
                         "no learning curve)")
    config = RunConfig.from_yaml(run_dir / CONFIG_FILE)
    labels = json.loads((run_dir / LABELS_FILE).read_text())
    report = diagnose_fit(pd.read_csv(run_dir / METRICS_FILE), metric=config.main_metric(), task=labels["task"],
                          num_classes=len(labels["classes"]), chance_loss=_regression_chance(run_dir, labels),
                          config=config)
    if save:
        write_json(run_dir / REPORT_FILE, report.to_dict())
    return report


def _against_overfitting(config, best_epoch: int) -> list[str]:
    drop_rate = config.model.drop_rate if config else 0.0
    decay = config.train.weight_decay if config else 0.0
    augment = config.train.augment if config else ""
    out = [f"--dropout {min(0.5, round(drop_rate + 0.2, 2)):g} (now {drop_rate:g})",
           f"--weight-decay {0.05 if not decay else round(decay * 5, 6):g} (now {decay:g})",
           f"--augment {_more_augmentation(augment)!r} (now {augment or 'none'!r}); `honed analyze RUN` names the "
           "factors the model is sensitive to"]
    out.append(f"--patience 3, or --epochs {best_epoch} (validation loss was lowest there)")
    if config is None or (get_task(config.data.task).is_classification and not config.train.label_smoothing):
        out.append("--label-smoothing 0.1")
    if config is not None and not config.model.pretrained and config.model.strategy not in ("probe", "head"):
        out.append("--pretrained (or --weights FILE): pretrained features overfit less on small data")
    return out


def _against_underfitting(config, *, steep: bool, high: bool) -> list[str]:
    epochs = config.train.epochs if config else 0
    lr = config.train.lr if config else 0.0
    out = []
    if steep:
        out.append(f"--epochs {2 * epochs if epochs else 'more'} (now {epochs or '?'}): the loss was still falling")
        out.append(f"--lr {2 * lr:g} (now {lr:g}), or `--schedule onecycle`")
    if high:
        if config is not None and config.model.strategy in ("probe", "head", "partial"):
            out.append(f"--strategy full (now {config.model.strategy}): a frozen backbone limits what can be fitted")
        out.append(f"--model with more capacity than {config.model.name if config else 'this one'}")
        if config is not None and (config.model.drop_rate or config.train.weight_decay or config.train.augment
                                   or config.train.label_smoothing):
            out.append("less regularization: " + ", ".join(
                text for text, on in ((f"--dropout 0 (now {config.model.drop_rate:g})", config.model.drop_rate),
                                      (f"--weight-decay 0 (now {config.train.weight_decay:g})",
                                       config.train.weight_decay),
                                      (f"a lighter --augment (now {config.train.augment!r})", config.train.augment),
                                      (f"--label-smoothing 0 (now {config.train.label_smoothing:g})",
                                       config.train.label_smoothing)) if on))
        if not steep:
            out.append(f"--epochs {2 * epochs if epochs else 'more'} and --lr {2 * lr:g} if the curve allows")
    return out


def _more_augmentation(policy: str) -> str:
    """The run's policy with the common geometric and colour fragments it lacks added."""
    present = {part.split(":")[0].split("@")[0] for part in policy.split(",") if part}
    extra = [p for p in ("hflip", "rotate:15", "color:0.3@0.5") if p.split(":")[0] not in present]
    return ",".join([policy] * bool(policy) + extra) or policy


def _mixes(policy: str) -> bool:
    return any(part.split(":")[0].split("@")[0] in ("mixup", "cutmix") for part in policy.split(",") if part)


def _smoothed_floor(smoothing: float, classes: int) -> float:
    """Cross-entropy of a perfect model against label-smoothed targets: the entropy of the smoothed target."""
    if not smoothing or classes < 2:
        return 0.0
    high, low = 1 - smoothing + smoothing / classes, smoothing / classes
    return float(-(high * math.log(high) + (classes - 1) * low * math.log(low)))


def _regression_chance(run_dir: Path, labels: dict) -> float | None:
    """Regression: the squared error of predicting the training mean (the targets' mean variance)."""
    if get_task(labels["task"]).is_classification or not (run_dir / MANIFEST_FILE).is_file():
        return None
    frame = pd.read_parquet(run_dir / MANIFEST_FILE)
    columns = [c for c in labels["target_columns"] if c in frame]
    train = frame[frame["split"] == "train"] if "split" in frame else frame
    if not columns or train.empty:
        return None
    return float(train[columns].astype(float).var(ddof=0).mean())
