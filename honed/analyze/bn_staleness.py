"""Stale batch norm statistics: do a layer's running mean and variance still describe what it sees?

On a few training batches (evaluation preprocessing, model in eval mode, so every layer sees what it sees
at inference) each batch norm layer's input is pooled per channel, and compared with the layer's running
statistics:

    mean shift  |batch mean - running mean| / sqrt(running var + eps), per channel (a z-score)
    var ratio   |log((batch var + eps) / (running var + eps))|, per channel

Each layer is summarized by the median over its channels and the run by the median over its layers: robust
to the odd dead channel or layer, so a warning means most of the network is off. Only the layers the run
trained are measured: a frozen backbone keeps its pretrained statistics on purpose.

Thresholds (``MEAN_SHIFT_LIMIT``, ``VAR_RATIO_LIMIT``), from measurements with test_resnet at 32 px on the
shipped CIFAR-10 subset (480 training images, 4 epochs, batch 32; 256 training images measured):

    trained, no augmentation            mean shift 0.14  var ratio 0.27   (after bn-recalibrate: 0.03, 0.06)
    trained, hflip + crop               mean shift 0.05  var ratio 0.06
    running statistics reset            mean shift 0.16  var ratio 3.8    accuracy 0.37 -> 0.10
    statistics half-way to reset        mean shift 0.21  var ratio 3.0    accuracy 0.37 -> 0.19
    (bn-recalibrate on either: accuracy 0.35, log loss 1.79 against 1.85 as trained)

Runs of 6 to 40 steps on 2 colour classes (18 images) measured var ratios of 2.2 to 3.8: so few steps of a
0.1-momentum average under fast-moving weights leave statistics that are stale indeed. Trained runs stay
below a third of the limits, damaged ones go above four times the variance limit. A median variance off by a
factor e ** 0.7 ~ 2, or a median mean shift of half a standard deviation, rescales or shifts the normalized
activations of most channels as much as a strong augmentation would: worth the seconds a recalibration takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from honed.models.strategies import eval_mode

MEAN_SHIFT_LIMIT = 0.5  # median |z| of the channel means, in running standard deviations
VAR_RATIO_LIMIT = 0.7  # median |log variance ratio|: ~ a factor of 2
WORST_SHOWN = 3  # layers named in the warning


@dataclass
class LayerStats:
    name: str
    mean_shift: float  # median over channels of |z|
    var_ratio: float  # median over channels of |log(var ratio)|


@dataclass
class BnStaleness:
    """The evidence: per layer and overall; ``stale`` when either median is above its limit."""

    layers: list[LayerStats]
    images: int
    mean_shift: float  # median over layers
    var_ratio: float  # median over layers
    stale: bool
    limits: dict = field(default_factory=lambda: {"mean_shift": MEAN_SHIFT_LIMIT, "var_ratio": VAR_RATIO_LIMIT})

    def worst(self, count: int = WORST_SHOWN) -> list[LayerStats]:
        excess = lambda s: max(s.mean_shift / MEAN_SHIFT_LIMIT, s.var_ratio / VAR_RATIO_LIMIT)  # noqa: E731
        return sorted(self.layers, key=excess, reverse=True)[:count]

    def message(self, run: str) -> str:
        """The warning line, with its numbers (or the all-clear)."""
        numbers = (f"median mean shift {self.mean_shift:.2f} running std (limit {MEAN_SHIFT_LIMIT}), median |log "
                   f"variance ratio| {self.var_ratio:.2f} (limit {VAR_RATIO_LIMIT}) over {len(self.layers)} batch norm "
                   f"layers on {self.images} training images")
        if not self.stale:
            return f"batch norm running statistics fit the training images: {numbers}"
        worst = ", ".join(f"{s.name} ({s.mean_shift:.2f}, {s.var_ratio:.2f})" for s in self.worst())
        return (f"running statistics look stale: {numbers}; worst layers {worst}. Run `honed bn-recalibrate {run}` "
                "to re-estimate them on the training images")

    def to_dict(self) -> dict:
        return asdict(self)


class _Pooled:
    """Per-channel sums of one layer's inputs, accumulated in float64 over batches."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach().double()
        dims = [d for d in range(x.ndim) if d != 1]  # every axis but the channels
        total, squares = x.sum(dim=dims), (x * x).sum(dim=dims)
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += x.numel() // x.shape[1]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.count
        return mean, (self.squares / self.count - mean * mean).clamp_min(0.0)


@torch.no_grad()
def measure_bn_staleness(model: nn.Module, batches: Iterable[torch.Tensor],
                         layers: dict[str, _BatchNorm]) -> BnStaleness | None:
    """Compare each layer's running statistics with its inputs' statistics on ``batches`` (normalized model
    inputs on the model's device). None when there is no layer to measure."""
    if not layers:
        return None
    eval_mode(model)
    pooled = {name: _Pooled() for name in layers}
    hooks = [m.register_forward_pre_hook(pooled[name]) for name, m in layers.items()]
    images = 0
    try:
        for x in batches:
            model(x)
            images += len(x)
    finally:
        for hook in hooks:
            hook.remove()
    stats = [_layer_stats(name, layers[name], pooled[name]) for name in layers if pooled[name].count]
    if not stats:
        return None
    mean_shift = float(np.median([s.mean_shift for s in stats]))
    var_ratio = float(np.median([s.var_ratio for s in stats]))
    return BnStaleness(stats, images, mean_shift, var_ratio,
                       stale=mean_shift > MEAN_SHIFT_LIMIT or var_ratio > VAR_RATIO_LIMIT)


def _layer_stats(name: str, layer: _BatchNorm, pooled: _Pooled) -> LayerStats:
    mean, var = pooled.mean_var()
    running_mean = layer.running_mean.double()
    running_var = layer.running_var.double()
    z = (mean - running_mean).abs() / (running_var + layer.eps).sqrt()
    ratio = ((var + layer.eps) / (running_var + layer.eps)).log().abs()
    return LayerStats(name, float(z.median()), float(ratio.median()))


def run_bn_staleness(model: nn.Module, images: torch.Tensor, config, *, last_epoch: int,
                     batch_size: int = 64) -> BnStaleness | None:
    """Staleness of a run's model on ``images`` (uint8 training images decoded as in training)."""
    from honed.data.preprocess import normalize, to_unit_float
    from honed.training.bn_recalibrate import trained_bn_layers

    device = next(model.parameters()).device
    layers = trained_bn_layers(model, config, last_epoch)
    batches = (normalize(to_unit_float(images[i:i + batch_size].to(device)), config.preprocess.mean,
                         config.preprocess.std) for i in range(0, len(images), batch_size))
    return measure_bn_staleness(model, batches, layers)
