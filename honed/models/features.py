"""Frozen features: the input of a network's last linear layer (the pooled, pre-logit features) for every
image of a dataset, captured with a forward hook in eval mode. What the probe fits its head on, what the
advisor compares, what a gbm probe's trees predict from. With ``head_input=True`` the input of the whole
head module instead (the same tensor unless ``--head-bn`` or a torchvision head puts layers before the last
Linear): what the ``head`` strategy trains its head on when nothing in front of the head changes
(``honed.training.frozen_head``).

Cached as ``.npy`` under ``$HONED_CACHE/features`` (else ``~/.cache/honed``), keyed by the backbone's
weights, the preprocessing and each file's path, size and modification time: a second probe, or the
advisor, on the same data pays nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from honed.data.dataset import ImageDataset
from honed.data.loader import make_loader
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.models.cpu_passes import forward_in_passes
from honed.models.strategies import eval_mode, head_module
from honed.tracking.atomic import atomic_path
from honed.progress import Reporter

FEATURES_FORMAT = 1  # bump when what a feature file holds changes: old caches then get new keys


def last_linear(model: nn.Module) -> nn.Linear:
    """The network's last linear layer: the one a probe head becomes."""
    layers = [m for m in head_module(model).modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise HonedError(f"the head of {type(model).__name__} has no linear layer to write a probe into: "
                         "use --strategy head")
    return layers[-1]


@torch.no_grad()
def extract_features(model: nn.Module, dataset: ImageDataset, *, mean: list[float], std: list[float],
                     device: torch.device | str = "cpu", batch_size: int = 64, workers: int = 0,
                     reporter: Reporter | None = None, label: str = "features",
                     cache_dir: Path | None = None, head_input: bool = False) -> np.ndarray:
    """``float32 [N, F]``: the input of the last linear layer (``head_input``: of the whole head module) for
    every image of ``dataset``, in order.

    Cached under ``cache_dir/features`` when the images are files (in-memory datasets are not cached)."""
    cache = (_cache_file(model, dataset, mean, std, cache_dir, head_input=head_input)
             if cache_dir is not None else None)
    if cache is not None and cache.is_file():
        try:
            return np.load(cache)
        except (OSError, ValueError):
            pass  # damaged: extract again and overwrite
    pipeline = BatchPipeline(mean, std)
    loader = make_loader(dataset, batch_size=batch_size, train=False, workers=workers)
    eval_mode(model)
    if reporter is not None:
        reporter.phase_started(label, len(loader))
    try:
        with captured_features(model, head_input=head_input) as captured:
            for images, _ in loader:
                forward_in_passes(model, pipeline.eval_batch(images.to(device)))
                if reporter is not None:
                    reporter.advance()
    finally:
        if reporter is not None:
            reporter.phase_finished()
    width = last_linear(model).in_features
    if not captured:
        features = np.zeros((0, width), np.float32)
    else:  # a head's input keeps its shape (a head may pool a feature map itself)
        features = torch.cat(captured).numpy() if head_input else torch.cat(captured).reshape(-1, width).numpy()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
            np.save(handle, features)
    return features


@contextmanager
def captured_features(model: nn.Module, *, head_input: bool = False) -> Iterator[list[torch.Tensor]]:
    """Inside the block, every forward pass of ``model`` appends its last linear layer's input (float32, CPU):
    the features a probe head is fitted on, and that a gbm probe's trees predict from. ``head_input``: the
    input of the whole head module instead."""
    captured: list[torch.Tensor] = []
    layer = head_module(model) if head_input else last_linear(model)
    hook = layer.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].float().cpu()))
    try:
        yield captured
    finally:
        hook.remove()


def _cache_file(model: nn.Module, dataset: ImageDataset, mean, std, cache_dir: Path, *,
                head_input: bool = False) -> Path | None:
    if dataset.datasets:  # a user's in-memory Dataset: no stable identity to key on
        return None
    point = "|head" if head_input else ""  # the last linear layer's input keeps the keys it always had
    digest = hashlib.sha256(f"{FEATURES_FORMAT}|{dataset.image_size}|{list(mean)}|{list(std)}{point}".encode())
    layer = head_module(model) if head_input else last_linear(model)
    head = {id(t) for t in layer.state_dict(keep_vars=True).values()}  # the layer's input: its own weights
    # (and a head's batch norm statistics) do not matter
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in head:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for path in dataset.paths:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return Path(cache_dir) / "features" / f"{digest.hexdigest()[:32]}.npy"
