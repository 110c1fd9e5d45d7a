"""Stochastic weight averaging (Izmailov et al., 2018): the average of the epoch-end weights of the last part
of training, which tends to sit in a flatter, better-generalizing region than any single epoch's weights.

``fit`` asks ``Swa.schedule`` for the learning rates (from the first averaged epoch on, a constant ``swa_lr``
when one is given); ``SwaCallback`` hangs the rest on the loop's hooks: ``Swa.after_epoch`` at each epoch end
(adds the epoch's weights to a ``torch.optim.swa_utils.AveragedModel`` from epoch
``floor(swa_start * epochs) + 1`` on) and ``Swa.finish`` when training ends.
Finishing re-estimates the averaged model's batch norm statistics on the training images with honed's
evaluation preprocessing (an average of weights has no statistics of its own; ``honed.training.bn_recalibrate``),
evaluates it on validation, saves it as ``swa.safetensors`` and makes it ``best.safetensors`` (with
``predictions_val.parquet`` and the ledger score) only when it beats the best epoch. Its scores are
recorded as ``swa_<metric>`` in the run's metrics, and in ``swa.json``.

The running average is saved after each update (``swa_running.safetensors``), so a resumed run continues it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel

from honed.data.manifest import Manifest
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.metrics import is_better
from honed.artifacts import run_folder as runs
from honed.artifacts.run_folder import BEST_WEIGHTS, VAL_PREDICTIONS
from honed.tracking.atomic import write_json
from honed.training.bn_recalibrate import bn_layers, recalibrate_bn
from honed.training.callbacks import Callback, EpochEnd, RunInfo
from honed.training.checkpoint import save_weights
from honed.training.evaluation import evaluate_split
from honed.optim import LrSchedule
from honed.progress import Reporter
from honed.runtime import Runtime

SWA_FILE = "swa.safetensors"
RUNNING_FILE = "swa_running.safetensors"  # the average so far, for --resume
RECORD_FILE = "swa.json"


@dataclass(frozen=True)
class SwaSchedule(LrSchedule):
    """The run's schedule until ``start_step``, then the constant ``swa_lr``."""

    start_step: int = 0
    swa_lr: float = 0.0

    def lr_at(self, step: int) -> float:
        return self.swa_lr if step >= self.start_step else super().lr_at(step)


def first_swa_epoch(epochs: int, swa_start: float) -> int:
    """The first averaged epoch (1-based): the one after ``swa_start`` of the epochs are done."""
    return min(epochs, math.floor(swa_start * epochs) + 1)


def create_swa(config, strategy, run_dir: Path, *, resume: bool) -> "Swa | None":
    """The averager for ``--swa`` (None without it); refused for strategies that take no gradient steps."""
    if not config.train.swa:
        return None
    if not strategy.trains_network:
        raise HonedError(f"--swa averages the weights of training epochs; strategy {strategy.name} takes no "
                         "gradient step: leave out --swa or pick another --strategy")
    return Swa(run_dir=run_dir, epochs=config.train.epochs, start_epoch=first_swa_epoch(config.train.epochs,
               config.train.swa_start), swa_lr=config.train.swa_lr, resume=resume)


class SwaCallback(Callback):
    """``--swa`` on the loop's hooks: each epoch's weights into the average (saved before the checkpoint
    names the epoch done), then the average recalibrated, evaluated and compared when training ends."""

    def __init__(self, swa: "Swa", *, bn_loader: Callable[[], object], val_loader, val_set, runtime: Runtime,
                 pipeline: BatchPipeline, reporter: Reporter):
        self.swa, self.bn_loader, self.val_loader, self.val_set = swa, bn_loader, val_loader, val_set
        self.runtime, self.pipeline, self.reporter = runtime, pipeline, reporter

    def on_epoch_end(self, run: RunInfo, end: EpochEnd) -> None:
        self.swa.after_epoch(run.model, end.epoch)

    def on_train_end(self, run: RunInfo, metrics: dict) -> dict:
        return self.swa.finish(run.model, self.bn_loader(), self.val_loader, self.val_set, run.data.manifest,
                               runtime=self.runtime, pipeline=self.pipeline, metric=run.metric, metrics=metrics,
                               reporter=self.reporter)


class Swa:
    """The running weight average of one run; ``averaged_`` is None until the first averaged epoch."""

    def __init__(self, *, run_dir: Path, epochs: int, start_epoch: int, swa_lr: float = 0.0, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.epochs = epochs
        self.start_epoch = start_epoch
        self.swa_lr = swa_lr
        self.resume = resume
        self.averaged_: AveragedModel | None = None
        self.last_epoch_ = 0  # the last epoch in the average

    def schedule(self, schedule: LrSchedule, steps_per_epoch: int) -> LrSchedule:
        if not self.swa_lr:
            return schedule
        return SwaSchedule(**asdict(schedule), start_step=(self.start_epoch - 1) * steps_per_epoch, swa_lr=self.swa_lr)

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """Add this epoch's weights to the average (from ``start_epoch`` on) and save the average so far."""
        if epoch < self.start_epoch:
            return
        if self.averaged_ is None:
            self.averaged_ = AveragedModel(model)
            self._restore()
        if epoch <= self.last_epoch_:  # a resumed run repeating an epoch that is already in the average
            return
        self.averaged_.update_parameters(model)
        self.last_epoch_ = epoch
        save_weights(self.run_dir / RUNNING_FILE, self.averaged_.module,
                     {"n_averaged": str(int(self.averaged_.n_averaged)), "last_epoch": str(epoch)})

    def finish(self, model: nn.Module, train_loader, val_loader, val_set, manifest: Manifest, *, runtime: Runtime,
               pipeline: BatchPipeline, metric: str, metrics: dict, reporter: Reporter) -> dict:
        """Recalibrate, evaluate and save the average; returns the run's metrics with ``swa_*`` added, and
        the average's validation scores in place of the best epoch's when it beats them."""
        if self.averaged_ is None:
            reporter.message(f"swa: no epoch reached the averaging start (epoch {self.start_epoch}): nothing averaged")
            return metrics
        averaged = self.averaged_.module
        trained = set(bn_layers(model, trained_only=True))  # the layers whose statistics training changed
        layers = {name: m for name, m in bn_layers(averaged).items() if name in trained}
        images = recalibrate_bn(averaged, train_loader, runtime=runtime, pipeline=pipeline, layers=layers)
        scores, predictions = evaluate_split(averaged, val_loader, val_set, manifest, runtime=runtime,
                                             pipeline=pipeline)
        scores["val_loss"] = scores.pop("loss")
        save_weights(self.run_dir / SWA_FILE, averaged)
        won = is_better(metric, scores[metric], metrics[metric])
        if won:
            save_weights(self.run_dir / BEST_WEIGHTS, averaged)
            runs.save_predictions(self.run_dir / VAL_PREDICTIONS, predictions)
        count = int(self.averaged_.n_averaged)
        write_json(self.run_dir / RECORD_FILE, {
            "epochs_averaged": count, "first_epoch": self.start_epoch, "last_epoch": self.last_epoch_,
            "swa_lr": self.swa_lr, "bn_layers_recalibrated": len(layers), "bn_images": images,
            "scores": scores, "best_epoch_scores": {k: metrics[k] for k in scores if k in metrics},
            "became_best": won})
        reporter.message(f"swa: average of {count} epochs ({self.start_epoch}-{self.last_epoch_}), {metric} "
                         f"{scores[metric]:.4f} vs best epoch {metrics[metric]:.4f}: "
                         + ("it is now best.safetensors" if won else "best.safetensors stays the best epoch"))
        out = {**metrics, **{f"swa_{k}": v for k, v in scores.items()}, "swa_epochs": float(count)}
        if won:
            out.update(scores)
            out["swa_best"] = 1.0
        return out

    def _restore(self) -> None:
        """On --resume, continue the saved average (its tensors and how many epochs it holds)."""
        path = self.run_dir / RUNNING_FILE
        if not (self.resume and path.is_file()):
            return
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
        self.averaged_.module.load_state_dict(tensors)
        self.averaged_.n_averaged.fill_(int(meta.get("n_averaged", 0)))
        self.last_epoch_ = int(meta.get("last_epoch", 0))
