"""Batch norm recalibration: re-estimate running statistics on training images after the weights changed.

Running statistics are an exponential average (momentum 0.1) of batch statistics taken while the weights
moved, under training augmentation; after weight averaging (SWA), a weight edit or a short run they no
longer describe what the layers see at inference. ``recalibrate_bn`` resets them and takes a cumulative
average (``momentum=None``) over training batches with honed's evaluation preprocessing (no augmentation),
with only the batch norm layers in train mode and no gradient: the same idea as
``torch.optim.swa_utils.update_bn``, restricted to the layers the run actually trained.

Only trained layers are touched: a frozen backbone's batch norm keeps the statistics its head was trained
on (``honed.models.strategies.train_mode`` keeps them fixed during training for the same reason).

``recalibrate_run`` does it for a finished run's weights file (``honed bn-recalibrate``): validation scores
before and after, the previous weights kept as ``<name>.before-bn.safetensors``, the record in
``bn_recalibration.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from honed.artifacts.run_folder import BEST_WEIGHTS, RunFolder, VAL_PREDICTIONS, save_predictions
from honed.artifacts.trained import load_trained
from honed.artifacts.weights import save_weights
from honed.data.dataset import ImageDataset, split_dataset
from honed.data.loader import make_loader
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.models.strategies import eval_mode
from honed.runtime import Runtime, setup_runtime
from honed.tracking.atomic import write_bytes, write_json
from honed.training.evaluation import evaluate_split

RECORD_FILE = "bn_recalibration.json"
DEFAULT_BATCHES = 100  # x 64 images: per-channel means over thousands of images are stable to ~1e-2 std
WEIGHT_FILES = {"best": BEST_WEIGHTS, "last": "last.safetensors", "swa": "swa.safetensors"}


def bn_layers(model: nn.Module, *, trained_only: bool = False) -> dict[str, _BatchNorm]:
    """Batch norm layers that keep running statistics, by name; ``trained_only``: those with a parameter that
    requires grad (the ones ``train_mode`` lets update their statistics)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
            and (not trained_only or any(p.requires_grad for p in m.parameters(recurse=False)))}


def trained_bn_layers(model: nn.Module, config, last_epoch: int) -> dict[str, _BatchNorm]:
    """The batch norm layers a run's strategy trained in its last epoch (requires_grad flags are restored)."""
    from honed.models.strategies import create_strategy

    flags = [p.requires_grad for p in model.parameters()]
    try:
        strategy = create_strategy(config.model.strategy, unfreeze=config.model.unfreeze,
                                   pretrained=bool(config.model.pretrained or config.model.weights))
        strategy.param_groups(model)
        strategy.on_epoch_start(model, None, last_epoch, config.train.epochs)
        return bn_layers(model, trained_only=True)
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, *, runtime: Runtime, pipeline: BatchPipeline,
                   layers: dict[str, _BatchNorm] | None = None, max_batches: int = 0) -> int:
    """Reset ``layers`` (default: every batch norm layer) and re-estimate their statistics as a cumulative
    average over ``loader``'s batches (eval preprocessing); everything else stays in eval mode. Returns the
    number of images seen; the model is left in eval mode."""
    layers = bn_layers(model) if layers is None else layers
    if not layers:
        return 0
    momenta = {name: m.momentum for name, m in layers.items()}
    eval_mode(model)
    for m in layers.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
        m.train()
    seen = 0
    try:
        for index, (images, *_) in enumerate(loader):
            if max_batches and index >= max_batches:
                break
            if len(images) < 2:  # BatchNorm1d cannot take a batch of one in train mode
                continue
            with runtime.autocast():
                model(pipeline.eval_batch(images.to(runtime.device, non_blocking=True)))
            seen += len(images)
    finally:
        for name, m in layers.items():
            m.momentum = momenta[name]
        eval_mode(model)
    if not seen:
        raise HonedError("no training batch of 2 or more images to re-estimate batch norm statistics on")
    return seen


def sample_training_set(manifest, image_size: int, limit: int, *, seed: int = 0) -> ImageDataset:
    """At most ``limit`` training images, a seeded random sample (not the first rows: folders sort by class)."""
    frame = manifest.split("train")
    if frame.empty:
        raise HonedError("the run has no training images to re-estimate batch norm statistics on")
    if limit and len(frame) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
    return ImageDataset(frame, manifest.targets(frame), image_size, datasets=manifest.datasets)


@dataclass
class Recalibration:
    """What ``recalibrate_run`` did: validation scores before and after, and where the files went."""

    run: str
    weights: str  # the file recalibrated, e.g. best.safetensors
    backup: str  # the previous weights, e.g. best.before-bn.safetensors
    metric: str
    before: dict[str, float]
    after: dict[str, float]
    layers: int  # batch norm layers re-estimated
    images: int  # training images they were re-estimated on
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def recalibrate_run(run_dir: str | Path, *, weights: str = "best", batches: int = DEFAULT_BATCHES, batch_size: int = 64,
                    device: str = "auto", workers: int = -1, seed: int = 0) -> Recalibration:
    """Re-estimate the batch norm statistics of a run's weights on its training split (``batches`` batches of
    ``batch_size``, 0: all), re-evaluate validation, keep the previous file, save the new one atomically.

    For ``best`` weights the run's ``predictions_val.parquet`` is rewritten too, so analysis sees the model
    that is saved; the ledger row keeps the score of training (the JSON record has both)."""
    if weights not in WEIGHT_FILES:
        raise HonedError(f"--weights must be one of {', '.join(WEIGHT_FILES)}, not {weights!r}")
    started = time.perf_counter()
    run = RunFolder(Path(run_dir))
    if not run.is_run:
        raise HonedError(f"{run_dir} is not a honed run: give a run name or folder, see `honed runs`")
    path = run.file(WEIGHT_FILES[weights])
    if not path.is_file():
        hint = "train with --swa" if weights == "swa" else "train or --resume the run"
        raise HonedError(f"run {run.name} has no {path.name}: {hint} first")
    trained = load_trained(run.path, weights=path.name, gbm_head=False)
    model, config, manifest, history = trained.network, trained.config, run.manifest(), run.history()
    runtime = setup_runtime(device, "32")
    model.to(runtime.device)
    last_epoch = int(history["epoch"].max()) if history is not None else config.train.epochs
    layers = trained_bn_layers(model, config, last_epoch)
    if not layers:
        raise HonedError(f"run {run.name} trained no batch norm layer (strategy {config.model.strategy}, model "
                         f"{config.model.name}): its statistics are the ones it started from; nothing to recalibrate")
    pipeline = BatchPipeline(config.preprocess.mean, config.preprocess.std)
    size = config.preprocess.image_size
    val_set = split_dataset(manifest, "val", size)
    val_loader = make_loader(val_set, batch_size=batch_size, train=False, workers=workers)
    before, _ = evaluate_split(model, val_loader, val_set, manifest, runtime=runtime, pipeline=pipeline)
    train_set = sample_training_set(manifest, size, batches * batch_size, seed=seed)
    images = recalibrate_bn(model, make_loader(train_set, batch_size=batch_size, train=False, workers=workers),
                            runtime=runtime, pipeline=pipeline, layers=layers)
    after, predictions = evaluate_split(model, val_loader, val_set, manifest, runtime=runtime, pipeline=pipeline)
    backup = path.with_name(path.name.replace(".safetensors", ".before-bn.safetensors"))
    write_bytes(backup, path.read_bytes())  # the previous weights, complete on disk before they are replaced
    save_weights(path, model)
    if weights == "best":
        save_predictions(run.file(VAL_PREDICTIONS), predictions)
    result = Recalibration(run.name, path.name, backup.name, config.main_metric(), _renamed(before),
                           _renamed(after), len(layers), images, round(time.perf_counter() - started, 2))
    write_json(run.path / RECORD_FILE, result.to_dict())
    return result


def _renamed(scores: dict[str, float]) -> dict[str, float]:
    """evaluate_split's ``loss`` is the validation loss: named as in metrics.csv."""
    return {("val_loss" if k == "loss" else k): float(v) for k, v in scores.items()}
