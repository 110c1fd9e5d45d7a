"""Batch norm recalibration: re-estimate running statistics on training images after the weights changed.

Running statistics are an exponential average (momentum 0.1) of batch statistics taken while the weights
moved, under training augmentation; after weight averaging (SWA), a weight edit or a short run they no
longer describe what the layers see at inference. ``recalibrate_bn`` resets them and takes a cumulative
average (``momentum=None``) over training batches with honed's evaluation preprocessing (no augmentation),
with only the batch norm layers in train mode and no gradient: the same idea as
``torch.optim.swa_utils.update_bn``, restricted to the layers the run actually trained.

Only trained layers are touched: a frozen backbone's batch norm keeps the statistics its head was trained
on (``honed.models.strategies.train_mode`` keeps them fixed during training for the same reason).

``honed.analyze.bn_recalibration.recalibrate_run`` does it for a finished run's weights file
(``honed bn-recalibrate``).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from honed.data.dataset import ImageDataset
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.models.strategies import eval_mode
from honed.runtime import Runtime



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
