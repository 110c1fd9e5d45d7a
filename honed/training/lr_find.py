"""The learning-rate range test (Smith, 2015; fastai's ``lr_find``): train for a few mini-batches while the
learning rate grows exponentially from ``min_lr`` to ``max_lr``, record the loss, stop once it diverges, and
suggest a rate from the shape of the curve.

It builds its own model, optimizer and data exactly as ``honed.train`` would (same factory, transfer strategy,
parameter groups, optimizer and batch pipeline), so the rate it finds is the one a run with this config sees.
Nothing it trains is kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.manifest import Manifest
from honed.data.prepare import prepare_data
from honed.errors import HonedError
from honed.models.factory import build_model, with_preprocess_defaults
from honed.models.strategies import create_strategy, reset_new_head, train_mode
from honed.training.inputs import batch_pipeline, loader_factory  # the run's own loaders and pipeline
from honed.optim import build_optimizer, set_lr
from honed.progress import LogReporter, Reporter
from honed.runtime import Runtime, setup_runtime, teardown_runtime
from honed.tracking.atomic import atomic_path
from honed.tasks import get_task

DIVERGENCE_FACTOR = 4.0  # stop once the smoothed loss exceeds this multiple of the best smoothed loss
SMOOTHING = 0.9  # EMA factor of the loss: a window of ~10 steps; fastai's 0.98 (~50 of 100 steps) lags the
# curve by several decades of learning rate and moves the suggestion towards divergence
MIN_POINTS = 5  # fewer recorded steps than this before divergence: no curve to read a suggestion from
PLOT_FILE = "lr_find.png"
TABLE_FILE = "lr_find.csv"


@dataclass
class LrFindResult:
    lrs: list[float]  # the learning rate of each recorded step (the schedule's, before group lr_scales)
    losses: list[float]  # the smoothed (bias-corrected EMA) training loss at each step
    suggested_lr: float
    plot: Path | None = None  # loss vs learning rate, the suggestion marked; None when no out_dir was given
    raw_losses: list[float] = field(default_factory=list)  # the per-batch losses before smoothing
    diverged: bool = False  # True when the test stopped on divergence before max_lr

    @property
    def min_loss_lr(self) -> float:
        """The learning rate where the smoothed loss was lowest."""
        return self.lrs[int(np.argmin(self.losses))]


def find_lr(config: RunConfig, *, manifest: Manifest | None = None, reporter: Reporter | None = None,
            min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100, out_dir: Path | None = None) -> LrFindResult:
    """Run the range test for ``config`` on its training split; ``config`` itself is left unchanged.

    With ``out_dir`` the curve is saved there as ``lr_find.png`` (and the numbers as ``lr_find.csv``)."""
    if not 0 < min_lr < max_lr:
        raise HonedError(f"--min-lr must be positive and below --max-lr, not {min_lr} and {max_lr}")
    if steps < MIN_POINTS * 2:
        raise HonedError(f"--steps must be at least {MIN_POINTS * 2} for a curve to read, not {steps}")
    config = copy.deepcopy(config)  # building the model fills preprocessing defaults: not in the caller's copy
    reporter = reporter or LogReporter()
    runtime = setup_runtime(config.train.device, config.train.precision)
    try:
        lrs, raw = _range_test(config, manifest, reporter, runtime, min_lr, max_lr, steps)
    finally:
        teardown_runtime(runtime)
    smoothed = smooth(raw)
    diverged = len(lrs) < steps
    if len(lrs) < MIN_POINTS:
        raise HonedError(f"the loss diverged within {len(lrs)} steps of the range test: lower --min-lr")
    result = LrFindResult(lrs, smoothed, suggest_lr(lrs, smoothed), raw_losses=raw, diverged=diverged)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        result.plot = plot_lr_find(result, out_dir / PLOT_FILE)
        with atomic_path(out_dir / TABLE_FILE) as tmp:
            pd.DataFrame({"lr": lrs, "loss": raw, "smoothed_loss": smoothed}).to_csv(tmp, index=False)
    return result


def _range_test(config: RunConfig, manifest: Manifest | None, reporter: Reporter, runtime: Runtime,
                min_lr: float, max_lr: float, steps: int) -> tuple[list[float], list[float]]:
    """The training steps of the test: (learning rates, raw losses) up to divergence or ``steps``."""
    if config.model.strategy == "auto":
        raise HonedError("lr-find needs a concrete --strategy: see the advisor's choice with `honed advise DATA`")
    torch.manual_seed(config.train.seed)
    data = prepare_data(config.data, seed=config.train.seed, manifest=manifest, reporter=reporter)
    strategy = create_strategy(config.model.strategy, unfreeze=config.model.unfreeze,
                               pretrained=bool(config.model.pretrained or config.model.weights))
    if not strategy.trains_network:
        raise HonedError(f"strategy {strategy.name!r} takes no gradient steps: it has no learning rate to find")
    if not strategy.uses_pretrained:
        config.model.pretrained, config.model.weights = False, ""
    model = build_model(config.model, data.manifest.num_outputs)
    config.preprocess = with_preprocess_defaults(config.preprocess, model)
    reset_new_head(model, model_name=config.model.name, pretrained=config.model.pretrained,
                   weights=config.model.weights, classes=data.manifest.classes)
    groups = strategy.param_groups(model)
    model.to(runtime.device)
    if runtime.device.type == "cuda" and config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(groups, name=config.train.optimizer, lr=min_lr,
                                weight_decay=config.train.weight_decay)
    train_set = split_dataset(data.manifest, "train", config.preprocess.image_size)
    loader = loader_factory(config, runtime, train_set, reporter)(
        train_set, batch_size=config.train.batch_size, train=True, workers=config.train.workers,
        seed=config.train.seed, pin_memory=runtime.device.type == "cuda")
    pipeline = batch_pipeline(config, data.manifest, runtime)
    generator = torch.Generator(device=runtime.device)
    generator.manual_seed(config.train.seed)

    lrs: list[float] = []
    raw: list[float] = []
    best = math.inf
    train_mode(model)
    reporter.phase_started("lr range test", steps)
    try:
        for images, targets in _batches(loader, steps):
            lr = min_lr * (max_lr / min_lr) ** (len(lrs) / (steps - 1))
            loss = _step(model, optimizer, images, targets, lr, config=config, runtime=runtime,
                         pipeline=pipeline, generator=generator)
            lrs.append(lr)
            raw.append(loss)
            reporter.advance()
            current = smooth(raw)[-1]
            best = min(best, current)
            if not math.isfinite(loss) or current > DIVERGENCE_FACTOR * best:
                break
    finally:
        reporter.phase_finished()
    return lrs, raw


def _batches(loader, steps: int):
    """``steps`` training batches, passing over the loader as many epochs as it takes."""
    epoch, given = 0, 0
    while given < steps:
        epoch += 1
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            yield batch
            given += 1
            if given == steps:
                return


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, images, targets, lr: float, *, config: RunConfig,
          runtime: Runtime, pipeline, generator) -> float:
    """One training step at ``lr``, as ``train_one_epoch`` takes it; returns the batch loss."""
    set_lr(optimizer, lr)
    images = images.to(runtime.device, non_blocking=True)
    targets = targets.to(runtime.device, non_blocking=True)
    inputs, targets = pipeline.train_batch(images, targets, generator)
    with runtime.autocast():
        loss = get_task(config.data.task).loss(model(inputs), targets, label_smoothing=config.train.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.train.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
    optimizer.step()
    return float(loss.detach())


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average: the early values are not pulled towards zero."""
    out, average = [], 0.0
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** i))
    return out


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The learning rate where the smoothed loss falls fastest (per decade), at most a tenth of the rate at
    its minimum. The bound because the minimum sits at the edge of instability (a step later the loss
    turns up), and a whole run at that rate drifts over the edge as its weights grow; the steepest-descent
    point of a curve that falls until just before the minimum can sit right next to it. A tenth is the
    margin fastai's ``lr_min / 10`` rule keeps."""
    log_lrs = np.log10(np.asarray(lrs, dtype=float))
    values = np.asarray(losses, dtype=float)
    i_min = int(np.nanargmin(values))
    if i_min == 0:
        raise HonedError("the loss only rose during the range test: lower --min-lr (or --max-lr)")
    # Slopes over a window, after the smoother has warmed up: at the start a few noisy losses over a
    # tiny lr range look like the steepest descent of the whole curve.
    skip, half = max(3, len(values) // 10), max(2, len(values) // 25)
    centres = np.arange(skip + half, i_min - half + 1)
    if len(centres) == 0:
        return max(lrs[i_min] / 10, lrs[0])
    slopes = (values[centres + half] - values[centres - half]) / (log_lrs[centres + half] - log_lrs[centres - half])
    steepest = float(lrs[int(centres[int(np.nanargmin(slopes))])])
    return max(min(steepest, lrs[i_min] / 10), lrs[0])


def plot_lr_find(result: LrFindResult, path: Path) -> Path:
    """Smoothed loss against learning rate (log scale), the raw losses faint, the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if result.raw_losses:
        ax.plot(result.lrs, result.raw_losses, color="tab:blue", alpha=0.25, linewidth=1, label="batch loss")
    ax.plot(result.lrs, result.losses, color="tab:blue", linewidth=2, label="smoothed loss")
    ax.axvline(result.suggested_lr, color="tab:red", linestyle="--",
               label=f"suggested lr {result.suggested_lr:.1e}")
    ax.axvline(result.min_loss_lr, color="tab:gray", linestyle=":", label=f"minimum {result.min_loss_lr:.1e}")
    ax.set_xscale("log")
    top = max(result.losses[: int(np.argmin(result.losses)) + 1] + [result.losses[0]])
    low = min(result.losses)
    ax.set_ylim(low - 0.05 * (top - low + 1e-12), top + 0.3 * (top - low + 1e-12))  # the falling part, not the blow-up
    ax.set(xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
