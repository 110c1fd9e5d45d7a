"""The ``head`` strategy on frozen features: the backbone runs once per image, not once per image per epoch.

When nothing in front of the head changes during a run - the ``head`` strategy, no augmentation, one
process, a backbone with no dropout or stochastic depth of its own - the head's input for an image is the
same in every epoch. ``head_feeds`` then computes it once (eval mode, ``honed.models.features``, cached on
disk with the probe's features) and the loop trains the head module alone on it: the same optimizer,
schedule, loss, label smoothing, gradient clipping, batches in the same order (the same
``ResumableSampler``), per-epoch evaluation, checkpoints and records. The head is a module of the network,
so the weights saved are the whole network's, backbone unchanged, and predict and export read them as any
run's. The head trains in train mode as before, so its own dropout and batch norm (``--head-bn``) behave as
they did.

Measured (``benchmarks/results_image_size.md``, EfficientNet-Lite0 at 128 px, 600 CIFAR demo images, 5
epochs): 34 CPU seconds with the cache against 186 without, the same test accuracy to the image; with the
cache an epoch is the head alone (about a tenth of a second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import SequentialSampler

from honed.data.cache import cache_root
from honed.data.loader import ResumableSampler
from honed.models.features import extract_features
from honed.models.strategies import Head, Strategy, head_module
from honed.progress import Reporter
from honed.runtime import Runtime


@dataclass
class Feeds:
    """What an epoch trains and evaluates: the network and the image loaders, or the head and feature loaders."""

    trained: nn.Module  # what the optimizer steps through: the network (maybe DDP-wrapped) or its head
    evaluated: nn.Module  # what validation runs: the network or its head
    train_loader: object
    val_loader: object
    pipeline: object  # BatchPipeline for images; PassThrough for features


class PassThrough:
    """The batch pipeline of features: already normalized and unaugmented, they go to the head as they are."""

    def eval_batch(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def train_batch(self, features: torch.Tensor, targets: torch.Tensor,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return features, targets


class FeatureBatches:
    """Batches ``(features [B, ...], targets [B])`` in the order the image loaders give (``make_loader``,
    ``CachedBatchLoader``): the same ``ResumableSampler`` and ``drop_last`` rule when training, dataset order
    and a last partial batch when evaluating. ``start_epoch`` positions it as it does them."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, *, batch_size: int, train: bool,
                 seed: int = 0):
        self.features, self.targets, self.batch_size = features, targets, batch_size
        positions = range(len(features))
        self.sampler = (ResumableSampler(positions, num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=False)
                        if train else SequentialSampler(positions))
        self.drop_last = train and len(features) > batch_size

    def __len__(self) -> int:
        samples = len(self.sampler)
        return samples // self.batch_size if self.drop_last else math.ceil(samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long, device=self.features.device)
        for i in range(len(self)):
            rows = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.features.index_select(0, rows), self.targets.index_select(0, rows)


def why_not_cached(config, strategy: Strategy, model: nn.Module, runtime: Runtime) -> str:
    """Why the backbone must run in every epoch; empty when the head can train on features computed once."""
    if not isinstance(strategy, Head) or type(strategy).on_epoch_start is not Strategy.on_epoch_start:
        return f"strategy {strategy.name} trains more than the head"
    reasons = [(config.train.feature_cache == "off", "--feature-cache off"),
               (bool(config.train.augment), "augmentation changes the images every epoch"),
               (runtime.distributed, "data parallel (torchrun)"),
               (config.train.swa, "--swa recalibrates batch norm on images"),
               (bool(stochastic_backbone(model)), f"the backbone is random in training: {stochastic_backbone(model)}")]
    return next((reason for wanted, reason in reasons if wanted), "")


def stochastic_backbone(model: nn.Module) -> str:
    """What in front of the head draws random numbers in train mode (dropout, stochastic depth); empty: none."""
    head = {id(m) for m in head_module(model).modules()}
    if getattr(model, "drop_rate", 0):  # timm's dropout before the classifier, a function in forward_head
        return f"dropout {model.drop_rate} before the head (--dropout)"
    for name, module in model.named_modules():
        if id(module) in head:
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"dropout at {name}"
        if getattr(module, "drop_prob", 0):  # timm's DropPath
            return f"stochastic depth at {name} (--drop-path)"
    return ""


def head_feeds(config, model: nn.Module, sets, runtime: Runtime, reporter: Reporter) -> Feeds:
    """The head and loaders of its input features for ``sets``' training and validation images."""
    preprocess, t = config.preprocess, config.train

    def features(dataset, label: str) -> torch.Tensor:
        array = extract_features(model, dataset, mean=preprocess.mean, std=preprocess.std, device=runtime.device,
                                 batch_size=t.batch_size * 2, workers=t.workers, reporter=reporter, label=label,
                                 cache_dir=cache_root(), head_input=True)
        return torch.from_numpy(np.ascontiguousarray(array)).to(runtime.device)

    def targets(dataset) -> torch.Tensor:
        return torch.from_numpy(np.array(dataset.targets)).to(runtime.device)

    train = FeatureBatches(features(sets.train_set, "frozen features (train)"), targets(sets.train_set),
                           batch_size=t.batch_size, train=True, seed=t.seed)
    val = None if sets.val_set is None else FeatureBatches(  # a refit has no validation split
        features(sets.val_set, "frozen features (val)"), targets(sets.val_set), batch_size=t.batch_size * 2, train=False)
    return Feeds(head_module(model), head_module(model), train, val, PassThrough())
