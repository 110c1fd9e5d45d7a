"""``train``: a run from config to saved, evaluated model, recorded in the workspace ledger."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn

from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.loader import make_loader
from honed.data.fast_loader import make_fast_loader
from honed.data.manifest import Manifest
from honed.data.prepare import PreparedData, prepare_data
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.metrics import is_better
from honed.models.factory import build_model, with_preprocess_defaults
from honed.models.strategies import create_strategy, reset_new_head, trainable_signature
from honed.data.loader import start_epoch
from honed.training.checkpoint import (discard_partial_writes, read_state, restore_rng, restore_training_state,
                                       save_training_state, save_weights)
from honed.training.evaluation import evaluate_split
from honed.training.loop import AfterStep, EpochProgress, train_one_epoch
from honed.optim import LrSchedule, build_optimizer, schedule_cycles
from honed.progress import LogReporter, Reporter
from honed.runtime import Runtime, setup_runtime, teardown_runtime
from honed.training.swa import create_swa
from honed.artifacts import run_folder as runs
from honed.tracking.atomic import write_text
from honed.tracking.loggers import create_loggers


@dataclass
class TrainResult:
    name: str
    run_dir: Path
    metric: str
    score: float
    metrics: dict[str, float]  # the best epoch's validation metrics (+ test_* when a test split exists)
    best_epoch: int
    history: pd.DataFrame
    weights_digest: str  # of the final weights: equal on every rank of a data-parallel run


def train(config: RunConfig, *, manifest: Manifest | None = None, reporter: Reporter | None = None,
          resume: bool = False) -> TrainResult:
    """Train, evaluate and save one run. ``resume=True`` continues the run named in ``config``."""
    reporter = reporter or LogReporter()
    runtime = setup_runtime(config.train.device, config.train.precision)
    try:
        with _deterministic_algorithms(config.train.deterministic, strict=runtime.device.type == "cpu"):
            return _train(config, manifest, reporter, runtime, resume)
    except BaseException:
        if runtime.is_main and not resume:
            runs.release_unstarted(Path(config.workspace), config.name)
        raise
    finally:
        teardown_runtime(runtime)


@contextlib.contextmanager
def _deterministic_algorithms(on: bool, *, strict: bool):
    """--deterministic: torch's deterministic kernels (an error on CPU for an op that has none, a warning on
    GPU, where a few common ops have none), no cuDNN autotuning; the caller's settings come back afterwards."""
    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                cudnn.benchmark, cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS is deterministic only with this set
    torch.use_deterministic_algorithms(True, warn_only=not strict)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        cudnn.benchmark, cudnn.deterministic = previous[2], previous[3]


def _train(config: RunConfig, manifest: Manifest | None, reporter: Reporter, runtime: Runtime,
           resume: bool) -> TrainResult:
    torch.manual_seed(config.train.seed)
    metric = config.main_metric()
    workspace = Path(config.workspace)
    run_dir = runs.claim_run_dir(workspace, config, resume=resume, is_main=runtime.is_main)
    data = _prepare(config, manifest, reporter)
    if config.model.strategy == "auto":
        _resolve_auto(config, data, run_dir, runtime, reporter)
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
    if not strategy.trains_network:  # probe: features once, a scikit-learn head, no gradient steps
        from honed.training.probe import train_probe

        return train_probe(config, model, data, run_dir=run_dir, runtime=runtime, reporter=reporter, resume=resume)
    groups = strategy.param_groups(model)
    model.to(runtime.device)
    if runtime.device.type == "cuda" and config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(groups, name=config.train.optimizer, lr=config.train.lr,
                                weight_decay=config.train.weight_decay)
    state = read_state(run_dir) if resume else None
    rng_state = None  # a resumed run's random streams, put back just before training goes on
    if resume and runtime.is_main:
        discard_partial_writes(run_dir)
    if state is not None:
        rng_state = restore_training_state(run_dir, model, optimizer, state)
    trained = _wrap_data_parallel(model, runtime)

    size = config.preprocess.image_size
    train_set = split_dataset(data.manifest, "train", size)
    val_set = split_dataset(data.manifest, "val", size)
    pin = runtime.device.type == "cuda"
    loader_for = loader_factory(config, runtime, train_set)
    train_loader = loader_for(train_set, batch_size=config.train.batch_size, train=True,
                              workers=config.train.workers, seed=config.train.seed, pin_memory=pin,
                              rank=runtime.rank, world_size=runtime.world_size)
    val_loader = loader_for(val_set, batch_size=config.train.batch_size * 2, train=False,
                            workers=config.train.workers, pin_memory=pin)

    pipeline = batch_pipeline(config, data.manifest, runtime)

    trackers = create_loggers(config.train.log if runtime.is_main else [])  # --log: TensorBoard, MLflow (rank 0)
    if runtime.is_main:
        runs.start(workspace, run_dir, config, data.manifest, data.bad_files, metric, resumed=state is not None)
        trackers.start(config, run_dir)
        reporter.message(f"{len(train_set)} training and {len(val_set)} validation images, "
                         f"{data.manifest.num_outputs} {'classes' if config.data.task == 'classify' else 'targets'}, "
                         f"{config.model.name} at {size}px on {runtime.device}"
                         + (f", {runtime.world_size} processes" if runtime.distributed else ""))
        for warning in data.warnings:
            reporter.message(f"warning: {warning} (see `honed data check`)")
        if len(data.bad_files):
            reporter.message(f"skipped {len(data.bad_files)} undecodable image(s), listed in {run_dir / 'bad_files.csv'}")

    steps_per_epoch = len(train_loader)
    cycles = schedule_cycles(config.train.epochs, config.train.cycles)
    schedule = LrSchedule(config.train.lr, steps_per_epoch * config.train.epochs,
                          int(config.train.warmup_epochs * steps_per_epoch), config.train.schedule, cycles)
    if swa is not None:
        schedule = swa.schedule(schedule, steps_per_epoch)  # constant --swa-lr while averaging, when given
    in_epoch = state.get("in_epoch") if state else None  # a mid-epoch checkpoint: that epoch, part done
    first_epoch = in_epoch["epoch"] if in_epoch else (state["epoch"] + 1 if state else 1)
    step = state["step"] if state else 0
    best = state["best_score"] if state else None
    best_epoch = state["best_epoch"] if state else 0
    history = list(state["history"]) if state else []
    started = time.perf_counter() - (state["duration_s"] if state else 0.0)

    def checkpoint(*, epochs_done: int, step: int, generator: torch.Generator | None = None,
                   in_epoch: dict | None = None) -> None:
        """Everything a resume needs, at an epoch end or (``in_epoch``) after a step inside one."""
        save_training_state(run_dir, model, optimizer, {
            "epoch": epochs_done, "step": step, "best_score": best, "best_epoch": best_epoch,
            "history": history, "duration_s": time.perf_counter() - started,
            **({"in_epoch": in_epoch} if in_epoch else {})}, generator=generator)

    try:
        for epoch in range(first_epoch, config.train.epochs + 1):
            progress = (EpochProgress(in_epoch["batches"], in_epoch["loss_sum"])
                        if in_epoch and epoch == in_epoch["epoch"] else EpochProgress())
            start_epoch(train_loader, epoch, progress.batches)
            trainable = trainable_signature(model)
            strategy.on_epoch_start(model, optimizer, epoch, config.train.epochs)
            if runtime.distributed and trainable_signature(model) != trainable:
                trained = _wrap_data_parallel(model, runtime)  # DDP registers only what trains when built
            generator = _epoch_generator(config, epoch, runtime)
            if rng_state is not None:  # resuming: every random stream where the checkpoint left it
                restore_rng(rng_state, generator if progress.batches else None)
                rng_state = None
            epoch_start = time.perf_counter()
            reporter.phase_started(f"epoch {epoch}/{config.train.epochs}", steps_per_epoch - progress.batches)
            train_loss, step = train_one_epoch(
                trained, train_loader, optimizer, runtime=runtime, pipeline=pipeline, task=config.data.task,
                schedule=schedule, step=step, grad_clip=config.train.grad_clip,
                label_smoothing=config.train.label_smoothing, generator=generator,
                on_batch=reporter.advance, start=progress,
                after_step=_mid_epoch_checkpoints(config.train.checkpoint_every if runtime.is_main else 0, epoch,
                                                  steps_per_epoch, functools.partial(
                                                      checkpoint, epochs_done=epoch - 1, generator=generator)))
            reporter.phase_finished()
            _sync_buffers(model, runtime)
            if runtime.is_main:
                scores, predictions = evaluate_split(model, val_loader, val_set, data.manifest, runtime=runtime,
                                                     pipeline=pipeline)
                scores["val_loss"] = scores.pop("loss")
                row = {"epoch": epoch, "train_loss": train_loss, **scores,
                       "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - epoch_start}
                history.append(row)
                if is_better(metric, scores[metric], best):
                    best, best_epoch = scores[metric], epoch
                    save_weights(run_dir / "best.safetensors", model)
                    runs.save_predictions(run_dir / "predictions_val.parquet", predictions)
                if config.train.schedule == "cyclic" and epoch % (config.train.epochs // cycles) == 0:
                    from honed.ensemble.snapshot import save_snapshot  # a snapshot at each cycle's end

                    save_snapshot(run_dir, epoch * cycles // config.train.epochs, model, predictions)
                if swa is not None:
                    swa.after_epoch(model, epoch)  # saved before state.json names this epoch
                checkpoint(epochs_done=epoch, step=step)
                runs.save_history(run_dir, pd.DataFrame(history), metric)
                runs.record(workspace, run_dir, config, data.manifest, metric, _epoch_row(history, best_epoch),
                            status="running", duration_s=time.perf_counter() - started)
                trackers.log_epoch(row, epoch)  # with the run's files, before the reporter shows it
                reporter.epoch_finished(row)
            if _should_stop(config, epoch, best_epoch, runtime):
                reporter.message(f"early stop: no better {metric} for {config.train.patience} epochs "
                                 f"(best at epoch {best_epoch})")
                break
    except KeyboardInterrupt:
        if runtime.is_main:
            runs.mark(workspace, run_dir, "interrupted")
        trackers.finish({}, "interrupted")
        raise
    except Exception:
        if runtime.is_main:
            runs.mark(workspace, run_dir, "failed")
        trackers.finish({}, "failed")
        raise

    digest = _agree_across_ranks(model, runtime, run_dir)
    if not runtime.is_main:
        return TrainResult(config.name, run_dir, metric, float("nan"), {}, 0, pd.DataFrame(), digest)
    metrics = dict(_epoch_row(history, best_epoch))
    if swa is not None:  # the average: recalibrated, evaluated, saved; best.safetensors when it beats the best epoch
        metrics = swa.finish(model, loader_for(train_set, batch_size=config.train.batch_size * 2, train=False,
                                               workers=config.train.workers), val_loader, val_set, data.manifest,
                             runtime=runtime, pipeline=pipeline, metric=metric, metrics=metrics, reporter=reporter)
    metrics.update(_evaluate_test(config, model, data, runtime, pipeline, run_dir))
    runs.record(workspace, run_dir, config, data.manifest, metric, metrics, status="done",
                duration_s=time.perf_counter() - started)
    trackers.finish(metrics, "done")
    return TrainResult(config.name, run_dir, metric, float(metrics[metric]), metrics, best_epoch, pd.DataFrame(history),
                       digest)


def _epoch_row(history: list[dict], epoch: int) -> dict:
    return next(row for row in history if row["epoch"] == epoch)


def _prepare(config: RunConfig, manifest: Manifest | None, reporter: Reporter) -> PreparedData:
    data = prepare_data(config.data, seed=config.train.seed, manifest=manifest)
    config.data.skipped_files = len(data.bad_files)
    return data


def _resolve_auto(config: RunConfig, data: PreparedData, run_dir: Path, runtime: Runtime, reporter: Reporter) -> None:
    """--strategy auto: the advisor decides on rank 0, every rank follows, the run records why (advice.json)."""
    from honed.advise import advise_run, record_advice

    decision = [""]
    if runtime.is_main:
        advice = advise_run(config, data.manifest, reporter=reporter)
        record_advice(run_dir, config, advice)
        decision = [advice.decision]
    if runtime.distributed:
        dist.broadcast_object_list(decision, src=0)
    config.model.strategy = decision[0]
    torch.manual_seed(config.train.seed)  # the advisor drew random weights: start training from the seed


def _sync_buffers(model: nn.Module, runtime: Runtime) -> None:
    """Give every rank rank 0's batch-norm statistics: DDP keeps parameters equal, but each rank's running
    statistics come from its own shard of the batch. Rank 0's are the ones evaluated and saved."""
    if runtime.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def _should_stop(config: RunConfig, epoch: int, best_epoch: int, runtime: Runtime) -> bool:
    """Early stopping, decided on rank 0 (which evaluates) and shared with every rank."""
    stop = torch.tensor(int(bool(config.train.patience) and epoch - best_epoch >= config.train.patience))
    if runtime.distributed:
        stop = stop.to(runtime.device)
        dist.broadcast(stop, src=0)
    return bool(stop.item())


def batch_pipeline(config: RunConfig, manifest: Manifest, runtime: Runtime) -> BatchPipeline:
    augmenter = None
    if config.train.augment:
        from honed.augment import parse_policy

        augmenter = parse_policy(config.train.augment).build()
        if augmenter.has_mix and config.data.task != "classify":
            raise HonedError("mixup/cutmix mix class labels: they are for classification, not regression")
    return BatchPipeline(config.preprocess.mean, config.preprocess.std, augmenter,
                         channels_last=runtime.device.type == "cuda" and config.train.channels_last,
                         num_classes=manifest.num_outputs)


CACHE_AUTO_LIMIT_BYTES = 8 << 30  # --cache auto decodes once to disk when the split fits in this


def loader_factory(config: RunConfig, runtime: Runtime, dataset):
    """The decoded-image cache (decode once, batches sliced from a memory map; on CUDA the training array
    lives on the GPU when it fits) or the per-image DataLoader for data that should not be cached."""
    size = config.preprocess.image_size
    decoded_bytes = len(dataset) * 3 * size * size
    use_cache = config.train.cache == "on" or (config.train.cache == "auto" and decoded_bytes <= CACHE_AUTO_LIMIT_BYTES)
    if not use_cache:
        return make_loader
    resident = runtime.device.type == "cuda" and decoded_bytes < 0.4 * torch.cuda.mem_get_info(runtime.device)[0]

    def make(ds, **kwargs):
        on_device = runtime.device if resident and kwargs.get("train") else None
        return make_fast_loader(ds, device=on_device, **kwargs)

    return make


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


def _wrap_data_parallel(model: nn.Module, runtime: Runtime) -> nn.Module:
    if not runtime.distributed:
        return model
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _evaluate_test(config, model, data: PreparedData, runtime, pipeline, run_dir: Path) -> dict[str, float]:
    """The best weights on the held-out test split, when the data has one: reported, never selected on."""
    if not data.manifest.has_split("test"):
        return {}
    from honed.training.checkpoint import load_weights

    load_weights(run_dir / "best.safetensors", model)
    test_set = split_dataset(data.manifest, "test", config.preprocess.image_size)
    loader_for = loader_factory(config, runtime, test_set)
    loader = loader_for(test_set, batch_size=config.train.batch_size * 2, train=False,
                         workers=config.train.workers, pin_memory=runtime.device.type == "cuda")
    scores, predictions = evaluate_split(model, loader, test_set, data.manifest, runtime=runtime,
                                         pipeline=pipeline)
    runs.save_predictions(run_dir / "predictions_test.parquet", predictions)
    return {f"test_{k}": v for k, v in scores.items()}


def _agree_across_ranks(model: nn.Module, runtime: Runtime, run_dir: Path) -> str:
    """Hash the final weights; under data parallelism every rank must hold the same ones."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    mine = digest.hexdigest()
    if runtime.distributed:
        everyone: list[str] = [""] * runtime.world_size
        dist.all_gather_object(everyone, mine)
        if runtime.is_main:
            import json

            write_text(run_dir / "distributed.json", json.dumps(
                {"world_size": runtime.world_size, "weights_sha256": everyone, "agree": len(set(everyone)) == 1},
                indent=2))
        if len(set(everyone)) != 1:
            raise HonedError(f"data-parallel ranks disagree on the final weights: {everyone}")
    return mine
