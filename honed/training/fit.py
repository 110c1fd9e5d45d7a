"""``train``: a run from config to saved, evaluated model, recorded in the workspace ledger."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from honed.metrics import GREATER_IS_BETTER, is_better
from honed.models.factory import build_model
from honed.models.transfer import create_strategy, reset_new_head, trainable_signature
from honed.training.checkpoint import read_state, restore_training_state, save_training_state, save_weights
from honed.training.evaluation import evaluate_split
from honed.training.loop import train_one_epoch
from honed.training.optim import LrSchedule, build_optimizer, schedule_cycles
from honed.training.reporter import LogReporter, Reporter
from honed.training.runtime import Runtime, setup_runtime, teardown_runtime
from honed.tracking import runs
from honed.tracking.atomic import write_text
from honed.tracking.plots import plot_curves


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
        return _train(config, manifest, reporter, runtime, resume)
    finally:
        teardown_runtime(runtime)


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
    if not strategy.uses_pretrained and (config.model.pretrained or config.model.weights):
        reporter.message(f"strategy {strategy.name}: random initial weights, ignoring --pretrained / --weights")
        config.model.pretrained, config.model.weights = False, ""
    model = build_model(config, data.manifest.num_outputs)
    reset_new_head(model, model_name=config.model.name, pretrained=config.model.pretrained,
                   weights=config.model.weights)
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
    if state is not None:
        restore_training_state(run_dir, model, optimizer, state)
    trained = _wrap_data_parallel(model, runtime)

    size = config.preprocess.image_size
    train_set = split_dataset(data.manifest, "train", size)
    val_set = split_dataset(data.manifest, "val", size)
    pin = runtime.device.type == "cuda"
    loader_for = _loader_factory(config, runtime, train_set)
    train_loader = loader_for(train_set, batch_size=config.train.batch_size, train=True,
                              workers=config.train.workers, seed=config.train.seed, pin_memory=pin,
                              rank=runtime.rank, world_size=runtime.world_size)
    val_loader = loader_for(val_set, batch_size=config.train.batch_size * 2, train=False,
                            workers=config.train.workers, pin_memory=pin)

    pipeline = _batch_pipeline(config, data.manifest, runtime)

    if runtime.is_main:
        runs.start(workspace, run_dir, config, data.manifest, data.bad_files, metric, resumed=state is not None)
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
    start_epoch = state["epoch"] + 1 if state else 1
    step = state["step"] if state else 0
    best = state["best_score"] if state else None
    best_epoch = state["best_epoch"] if state else 0
    history = list(state["history"]) if state else []
    started = time.perf_counter() - (state["duration_s"] if state else 0.0)
    try:
        for epoch in range(start_epoch, config.train.epochs + 1):
            train_loader.sampler.set_epoch(epoch)
            trainable = trainable_signature(model)
            strategy.on_epoch_start(model, optimizer, epoch, config.train.epochs)
            if runtime.distributed and trainable_signature(model) != trainable:
                trained = _wrap_data_parallel(model, runtime)  # DDP registers only what trains when built
            epoch_start = time.perf_counter()
            reporter.phase_started(f"epoch {epoch}/{config.train.epochs}", steps_per_epoch)
            train_loss, step = train_one_epoch(
                trained, train_loader, optimizer, runtime=runtime, pipeline=pipeline, task=config.data.task,
                schedule=schedule, step=step, grad_clip=config.train.grad_clip,
                label_smoothing=config.train.label_smoothing, generator=_epoch_generator(config, epoch, runtime),
                on_batch=reporter.advance)
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
                save_training_state(run_dir, model, optimizer, {
                    "epoch": epoch, "step": step, "best_score": best, "best_epoch": best_epoch,
                    "history": history, "duration_s": time.perf_counter() - started})
                runs.save_history(run_dir, pd.DataFrame(history), metric)
                runs.record(workspace, run_dir, config, data.manifest, metric, _epoch_row(history, best_epoch),
                            status="running", duration_s=time.perf_counter() - started)
                reporter.epoch_finished(row)
            if _should_stop(config, epoch, best_epoch, runtime):
                reporter.message(f"early stop: no better {metric} for {config.train.patience} epochs "
                                 f"(best at epoch {best_epoch})")
                break
    except KeyboardInterrupt:
        if runtime.is_main:
            runs.mark(workspace, run_dir, "interrupted")
        raise
    except Exception:
        if runtime.is_main:
            runs.mark(workspace, run_dir, "failed")
        raise

    digest = _agree_across_ranks(model, runtime, run_dir)
    if not runtime.is_main:
        return TrainResult(config.name, run_dir, metric, float("nan"), {}, 0, pd.DataFrame(), digest)
    metrics = dict(_epoch_row(history, best_epoch))
    metrics.update(_evaluate_test(config, model, data, runtime, pipeline, run_dir))
    runs.record(workspace, run_dir, config, data.manifest, metric, metrics, status="done",
                duration_s=time.perf_counter() - started)
    return TrainResult(config.name, run_dir, metric, float(best), metrics, best_epoch, pd.DataFrame(history), digest)


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


def _batch_pipeline(config: RunConfig, manifest: Manifest, runtime: Runtime) -> BatchPipeline:
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


def _loader_factory(config: RunConfig, runtime: Runtime, dataset):
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
    loader_for = _loader_factory(config, runtime, test_set)
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
