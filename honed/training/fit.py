"""``train``: a run from config to saved, evaluated model.

The loop trains and evaluates; what the run leaves behind (its folder and ledger row, cyclic snapshots, the
weight average, loggers) hangs on the callbacks of ``honed.training.callbacks``. The caller's config is
never changed: the run works on a copy, settled here (name, preprocessing, skipped files), and returns it
on ``TrainResult.config``. ``--strategy auto`` is settled before, by ``honed.advise.resolve_strategy``.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import torch.nn as nn

from honed.artifacts import run_folder as runs
from honed.combine.calibration import calibrate_run
from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.loader import start_epoch
from honed.data.manifest import Manifest
from honed.data.pipeline import BatchPipeline
from honed.data.prepare import prepare_data
from honed.errors import HonedError
from honed.metrics import better_epoch
from honed.models.factory import build_model, with_preprocess_defaults
from honed.models.strategies import Strategy, create_strategy, reset_new_head, trainable_signature
from honed.optim import LrSchedule, build_optimizer, schedule_cycles
from honed.progress import LogReporter, Reporter
from honed.runtime import Runtime, setup_runtime, teardown_runtime
from honed.artifacts.run_folder import BEST_WEIGHTS, TEST_PREDICTIONS
from honed.training.bookkeeping import RunLoggers, RunRecords
from honed.training.callbacks import Callback, CallbackList, EpochEnd, RunInfo
from honed.training.checkpoint import (discard_partial_writes, load_weights, read_state, restore_rng,
                                       restore_training_state, save_training_state)
from honed.training.devices import (agree_across_ranks, decided_on_rank0, deterministic_algorithms, sync_buffers,
                                    wrap_data_parallel)
from honed.training.evaluation import evaluate_split
from honed.training.frozen_head import Feeds, head_feeds, why_not_cached
from honed.training.inputs import batch_pipeline, loader_factory
from honed.training.result import TrainResult
from honed.training.loop import AfterStep, EpochProgress, train_one_epoch
from honed.training.probe import train_probe
from honed.training.snapshots import CycleSnapshots
from honed.training.swa import Swa, SwaCallback, create_swa

AUTO_UNRESOLVED = ("strategy 'auto' is decided by the advisor before training: resolve it first with "
                   "honed.advise.resolve_strategy(config), or train with honed.train or `honed train`, which do")


def train(config: RunConfig, *, manifest: Manifest | None = None, reporter: Reporter | None = None,
          resume: bool = False, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train, evaluate and save one run. ``resume=True`` continues the run named in ``config``. ``callbacks``
    hear of the run on rank 0, after its own records. ``config`` is left as it was: see ``result.config``."""
    if config.model.strategy == "auto":
        raise HonedError(AUTO_UNRESOLVED)
    config = copy.deepcopy(config)
    reporter = reporter or LogReporter()
    runtime = setup_runtime(config.train.device, config.train.precision)
    try:
        with deterministic_algorithms(config.train.deterministic, strict=runtime.device.type == "cpu"):
            return _train(config, manifest, reporter, runtime, resume, list(callbacks))
    except BaseException:
        if runtime.is_main and not resume:
            runs.release_unstarted(Path(config.workspace), config.name)
        raise
    finally:
        teardown_runtime(runtime)


def _train(config: RunConfig, manifest: Manifest | None, reporter: Reporter, runtime: Runtime, resume: bool,
           callbacks: list[Callback]) -> TrainResult:
    """Settle the run (its folder and name, data, strategy, model and preprocessing) on ``config``, a copy;
    then the probe's single fit or the network's epochs."""
    torch.manual_seed(config.train.seed)
    run_dir = runs.claim_run_dir(Path(config.workspace), config, resume=resume, is_main=runtime.is_main)
    data = prepare_data(config.data, seed=config.train.seed, manifest=manifest, reporter=reporter)
    config.data.skipped_files = len(data.bad_files)
    strategy = create_strategy(config.model.strategy, unfreeze=config.model.unfreeze,
                               pretrained=bool(config.model.pretrained or config.model.weights))
    swa = create_swa(config, strategy, run_dir, resume=resume)  # --swa: weight averaging (honed.training.swa)
    if not strategy.uses_pretrained and (config.model.pretrained or config.model.weights):
        reporter.message(f"strategy {strategy.name}: random initial weights, ignoring --pretrained / --weights")
        config.model.pretrained, config.model.weights = False, ""
    model = build_model(config.model, data.manifest.num_outputs)
    config.preprocess = with_preprocess_defaults(config.preprocess, model)
    reset_new_head(model, model_name=config.model.name, pretrained=config.model.pretrained,
                   weights=config.model.weights, classes=data.manifest.classes)
    run = RunInfo(config, run_dir, data, config.main_metric(), model, resumed=resume)
    if not strategy.trains_network:  # probe: features once, a scikit-learn head, no gradient steps
        watching = CallbackList(callbacks if runtime.is_main else [])
        with watching.reporting_failures(run):
            watching.on_run_start(run)
            result = train_probe(config, model, data, run_dir=run_dir, runtime=runtime, reporter=reporter,
                                 resume=resume)
            if runtime.is_main:
                calibrate_run(run_dir)  # a temperature on the probe's validation predictions
            watching.on_run_end(run, result.metrics)
        return replace(result, config=config)
    return _fit(run, strategy, swa, runtime, reporter, callbacks)


def _fit(run: RunInfo, strategy: Strategy, swa: Swa | None, runtime: Runtime, reporter: Reporter,
         extra: list[Callback]) -> TrainResult:
    """The epochs, as torchvision's ``main``: train one, evaluate it on rank 0, call back, checkpoint."""
    config, model, metric = run.config, run.model, run.metric
    groups = strategy.param_groups(model)
    model.to(runtime.device)
    if runtime.device.type == "cuda" and config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(groups, name=config.train.optimizer, lr=config.train.lr,
                                weight_decay=config.train.weight_decay)
    state, rng_state = _restore(run, optimizer, runtime)  # rng_state: put back just before training goes on
    run = replace(run, resumed=state is not None, started=time.perf_counter() - (state or {}).get("duration_s", 0.0))
    progress = _Progress.from_state(state)
    sets = _Splits.build(config, runtime, run.data.manifest, reporter if runtime.is_main else None)
    pipeline = batch_pipeline(config, run.data.manifest, runtime)
    steps_per_epoch, epochs = len(sets.train_loader), config.train.epochs
    schedule = _lr_schedule(config, steps_per_epoch, swa)
    callbacks = CallbackList(_callbacks(run, swa, sets, runtime, pipeline, reporter) + extra if runtime.is_main
                             else [])
    checkpoint = functools.partial(_checkpoint, run, optimizer, progress)

    with callbacks.reporting_failures(run):
        callbacks.on_run_start(run)
        if runtime.is_main:
            _announce(run, sets, runtime, reporter)
        feeds = _feeds(run, strategy, sets, pipeline, runtime, reporter)
        for epoch in range(progress.first_epoch, epochs + 1):
            start = progress.resume_point(epoch)
            start_epoch(feeds.train_loader, epoch, start.batches)
            feeds.trained = _start_epoch(strategy, model, feeds.trained, optimizer, epoch, epochs, runtime)
            generator = _epoch_generator(config, epoch, runtime)
            if rng_state is not None:  # resuming: every random stream where the checkpoint left it
                restore_rng(rng_state, generator if start.batches else None)
                rng_state = None
            after_step = _mid_epoch_checkpoints(config.train.checkpoint_every if runtime.is_main else 0, epoch,
                                                steps_per_epoch, functools.partial(checkpoint, epochs_done=epoch - 1,
                                                                                   generator=generator))
            epoch_start = time.perf_counter()
            reporter.phase_started(f"epoch {epoch}/{epochs}", steps_per_epoch - start.batches)
            train_loss, progress.step = train_one_epoch(
                feeds.trained, feeds.train_loader, optimizer, runtime=runtime, pipeline=feeds.pipeline,
                task=config.data.task,
                schedule=schedule, step=progress.step, grad_clip=config.train.grad_clip,
                label_smoothing=config.train.label_smoothing, generator=generator, on_batch=reporter.advance,
                start=start, after_step=after_step)
            reporter.phase_finished()
            sync_buffers(model, runtime)
            if runtime.is_main:
                scores, predictions = _validate(feeds.evaluated, feeds.val_loader, sets.val_set, run.data.manifest,
                                                runtime, feeds.pipeline)
                end = progress.add({"epoch": epoch, "train_loss": train_loss, **scores,
                                    "lr": optimizer.param_groups[0]["lr"],
                                    "seconds": time.perf_counter() - epoch_start}, predictions, metric)
                callbacks.on_epoch_end(run, end)
                checkpoint(epochs_done=epoch, step=progress.step)  # last: the epoch's files are all written
                reporter.epoch_finished(end.row)
            stop = callbacks.stop_reason(run, end) if runtime.is_main and epoch < epochs else ""
            if decided_on_rank0(bool(stop), runtime):
                reporter.message(f"stopped after epoch {epoch} of {epochs}: {stop}")
                break
            patience = config.train.patience
            if decided_on_rank0(bool(patience) and sets.val_loader is not None and epoch - progress.best_epoch >= patience, runtime):
                reporter.message(f"early stop: no better {metric} for {config.train.patience} epochs "
                                 f"(best at epoch {progress.best_epoch})")
                break

        digest = agree_across_ranks(model, runtime, run.run_dir)
        if not runtime.is_main:
            return TrainResult(config.name, run.run_dir, metric, float("nan"), {}, 0, pd.DataFrame(), digest, config)
        metrics = callbacks.on_train_end(run, dict(progress.best_row()))
        metrics.update(_evaluate_test(run, runtime, pipeline))
        callbacks.on_run_end(run, metrics)
    return TrainResult(config.name, run.run_dir, metric, float(metrics.get(metric, "nan")), metrics, progress.best_epoch,
                       pd.DataFrame(progress.history), digest, config)


@dataclass
class _Progress:
    """Where the run stands between epochs: what an epoch-end checkpoint records and a resume starts from."""

    epochs_done: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    in_epoch: dict | None = None  # from a mid-epoch checkpoint: that epoch, part done

    @classmethod
    def from_state(cls, state: dict | None) -> "_Progress":
        if state is None:
            return cls()
        return cls(state["epoch"], state["step"], state["best_score"], state["best_epoch"], list(state["history"]),
                   state.get("in_epoch"))

    @property
    def first_epoch(self) -> int:
        return self.in_epoch["epoch"] if self.in_epoch else self.epochs_done + 1

    def resume_point(self, epoch: int) -> EpochProgress:
        if self.in_epoch and epoch == self.in_epoch["epoch"]:
            return EpochProgress(self.in_epoch["batches"], self.in_epoch["loss_sum"])
        return EpochProgress()

    def add(self, row: dict, predictions: pd.DataFrame | None, metric: str) -> EpochEnd:
        previous = self.best_row() if self.best_epoch else None
        self.history.append(row)
        is_best = better_epoch(metric, row, previous)  # no validation: the last
        if is_best:
            self.best, self.best_epoch = row.get(metric), row["epoch"]
        return EpochEnd(row["epoch"], row, predictions, is_best, self.history, self.best_row())

    def best_row(self) -> dict:
        return next(row for row in self.history if row["epoch"] == self.best_epoch)


def _checkpoint(run: RunInfo, optimizer: torch.optim.Optimizer, progress: _Progress, *, epochs_done: int,
                step: int, generator: torch.Generator | None = None, in_epoch: dict | None = None) -> None:
    """Everything a resume needs, at an epoch end or (``in_epoch``) after a step inside one."""
    save_training_state(run.run_dir, run.model, optimizer, {
        "epoch": epochs_done, "step": step, "best_score": progress.best, "best_epoch": progress.best_epoch,
        "history": progress.history, "duration_s": run.elapsed(), **({"in_epoch": in_epoch} if in_epoch else {})},
        generator=generator)


def _restore(run: RunInfo, optimizer: torch.optim.Optimizer, runtime: Runtime) -> tuple[dict | None, object]:
    """On --resume: (the saved state, its random streams) with the weights and optimizer put back."""
    if not run.resumed:
        return None, None
    state = read_state(run.run_dir)
    if runtime.is_main:
        discard_partial_writes(run.run_dir)
    if state is None:
        return None, None
    return state, restore_training_state(run.run_dir, run.model, optimizer, state)


@dataclass
class _Splits:
    """The training and validation images and their loaders (None without a validation split: a refit);
    ``make`` builds another loader like them."""

    make: object
    train_set: object
    val_set: object
    train_loader: object
    val_loader: object

    @classmethod
    def build(cls, config: RunConfig, runtime: Runtime, manifest: Manifest,
              reporter: Reporter | None = None) -> "_Splits":
        size, pin, t = config.preprocess.image_size, runtime.device.type == "cuda", config.train
        train_set = split_dataset(manifest, "train", size)
        val_set = split_dataset(manifest, "val", size) if manifest.has_split("val") else None
        make = loader_factory(config, runtime, train_set, reporter)
        return cls(make, train_set, val_set,
                   make(train_set, batch_size=t.batch_size, train=True, workers=t.workers, seed=t.seed,
                        pin_memory=pin, rank=runtime.rank, world_size=runtime.world_size),
                   None if val_set is None else
                   make(val_set, batch_size=t.batch_size * 2, train=False, workers=t.workers, pin_memory=pin))


def _validate(model: nn.Module, loader, val_set, manifest: Manifest, runtime: Runtime,
              pipeline: BatchPipeline) -> tuple[dict, pd.DataFrame | None]:
    """The epoch's validation scores and predictions; none without a validation split (a refit trains its
    given epochs, and its last weights are the run's)."""
    if loader is None:
        return {}, None
    scores, predictions = evaluate_split(model, loader, val_set, manifest, runtime=runtime, pipeline=pipeline)
    scores["val_loss"] = scores.pop("loss")
    return scores, predictions


def _callbacks(run: RunInfo, swa: Swa | None, sets: _Splits, runtime: Runtime, pipeline: BatchPipeline,
               reporter: Reporter) -> list[Callback]:
    """The run's own bookkeeping, in the order it is written at each epoch end: the run folder (best weights,
    curves, ledger row), the cycle snapshots, the weight average, then the loggers."""
    config = run.config
    if sets.val_loader is None and (swa is not None or config.train.schedule == "cyclic"):
        raise HonedError("--swa and --schedule cyclic evaluate on the validation split: a run without one "
                         "(a refit) cannot use them")
    callbacks: list[Callback] = [RunRecords()]
    if config.train.schedule == "cyclic":
        callbacks.append(CycleSnapshots(epochs=config.train.epochs,
                                        cycles=schedule_cycles(config.train.epochs, config.train.cycles)))
    if swa is not None:
        bn_loader = functools.partial(sets.make, sets.train_set, batch_size=config.train.batch_size * 2,
                                      train=False, workers=config.train.workers)
        callbacks.append(SwaCallback(swa, bn_loader=bn_loader, val_loader=sets.val_loader, val_set=sets.val_set,
                                     runtime=runtime, pipeline=pipeline, reporter=reporter))
    return callbacks + [RunLoggers(config.train.log)]  # --log: TensorBoard, MLflow


def _lr_schedule(config: RunConfig, steps_per_epoch: int, swa: Swa | None) -> LrSchedule:
    """The learning rate as a pure function of the step; a constant --swa-lr while averaging, when given."""
    t = config.train
    schedule = LrSchedule(t.lr, steps_per_epoch * t.epochs, int(t.warmup_epochs * steps_per_epoch), t.schedule,
                          schedule_cycles(t.epochs, t.cycles))
    return swa.schedule(schedule, steps_per_epoch) if swa is not None else schedule


def _announce(run: RunInfo, sets: _Splits, runtime: Runtime, reporter: Reporter) -> None:
    config, data = run.config, run.data
    validation = f"{len(sets.val_set)} validation" if sets.val_set is not None else "no validation"
    reporter.message(f"{len(sets.train_set)} training and {validation} images, "
                     f"{data.manifest.num_outputs} {'classes' if config.data.task == 'classify' else 'targets'}, "
                     f"{config.model.name} at {config.preprocess.image_size}px on {runtime.device}"
                     + (f", {runtime.world_size} processes" if runtime.distributed else ""))
    for warning in data.warnings:
        reporter.message(f"warning: {warning} (see `honed data check`)")
    if len(data.bad_files):
        reporter.message(f"skipped {len(data.bad_files)} undecodable image(s), listed in "
                         f"{run.run_dir / 'bad_files.csv'}")


def _feeds(run: RunInfo, strategy: Strategy, sets: _Splits, pipeline: BatchPipeline, runtime: Runtime,
           reporter: Reporter) -> Feeds:
    """The head on its input features, computed once, when nothing in front of it changes in this run; else
    the network (wrapped for DDP) on the images, every epoch."""
    why = why_not_cached(run.config, strategy, run.model, runtime)
    if why:
        if strategy.name == "head":
            reporter.message(f"head strategy: the frozen backbone runs every epoch ({why})")
        return Feeds(wrap_data_parallel(run.model, runtime), run.model, sets.train_loader, sets.val_loader, pipeline)
    reporter.message("head strategy: frozen features computed once, the head trained on them")
    return head_feeds(run.config, run.model, sets, runtime, reporter)


def _start_epoch(strategy: Strategy, model: nn.Module, trained: nn.Module, optimizer, epoch: int, epochs: int,
                 runtime: Runtime) -> nn.Module:
    """The strategy's change of what trains (gradual unfreezing); the model to train, re-wrapped for DDP,
    which registers only what trains when it is built, when that changed."""
    trainable = trainable_signature(model)
    strategy.on_epoch_start(model, optimizer, epoch, epochs)
    if runtime.distributed and trainable_signature(model) != trainable:
        return wrap_data_parallel(model, runtime)
    return trained


def _epoch_generator(config: RunConfig, epoch: int, runtime: Runtime) -> torch.Generator:
    """Augmentation randomness fixed by (seed, epoch, rank): a resumed epoch draws what the original would."""
    generator = torch.Generator(device=runtime.device)
    generator.manual_seed(config.train.seed * 1_000_003 + epoch * 1009 + runtime.rank)
    return generator


def _mid_epoch_checkpoints(every: int, epoch: int, steps_per_epoch: int, save) -> AfterStep | None:
    """The loop's ``after_step`` hook for ``--checkpoint-every``: every ``every`` global steps, a checkpoint
    that a killed run resumes from at that very batch. The epoch's last batch is left to the epoch-end one.
    (Under data parallelism rank 0 saves its own augmentation stream; other ranks' differ after a resume.)"""
    if not every:
        return None

    def after_step(step: int, batches: int, loss_sum: torch.Tensor) -> None:
        if step % every == 0 and batches < steps_per_epoch:
            save(step=step, in_epoch={"epoch": epoch, "batches": batches, "loss_sum": loss_sum.item()})

    return after_step


def _evaluate_test(run: RunInfo, runtime: Runtime, pipeline: BatchPipeline) -> dict[str, float]:
    """The best weights on the held-out test split, when the data has one: reported, never selected on."""
    config, manifest = run.config, run.data.manifest
    if not manifest.has_split("test"):
        return {}
    load_weights(run.run_dir / BEST_WEIGHTS, run.model)
    test_set = split_dataset(manifest, "test", config.preprocess.image_size)
    loader = loader_factory(config, runtime, test_set)(
        test_set, batch_size=config.train.batch_size * 2, train=False, workers=config.train.workers,
        pin_memory=runtime.device.type == "cuda")
    scores, predictions = evaluate_split(run.model, loader, test_set, manifest, runtime=runtime, pipeline=pipeline)
    runs.save_predictions(run.run_dir / TEST_PREDICTIONS, predictions)
    return {f"test_{k}": v for k, v in scores.items()}
