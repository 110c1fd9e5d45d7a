"""The training step and the evaluation pass: plain functions, explicit arguments, numbers out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from honed.data.pipeline import BatchPipeline
from honed.models.cpu_passes import forward_in_passes
from honed.models.strategies import eval_mode, train_mode
from honed.optim import LrSchedule, set_lr
from honed.runtime import Runtime
from honed.tasks import get_task


@dataclass
class EpochProgress:
    """Where an epoch stands after a step: what a mid-epoch checkpoint records and a resumed epoch starts from."""

    batches: int = 0  # batches of this epoch trained on so far
    loss_sum: float = 0.0  # their summed training loss (a float32 value, so a resumed mean is bit-identical)


AfterStep = Callable[[int, int, torch.Tensor], None]  # (global step, batches done in the epoch, loss sum)


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, *, runtime: Runtime,
                    pipeline: BatchPipeline, task: str, schedule: LrSchedule, step: int, grad_clip: float,
                    label_smoothing: float = 0.0, generator: torch.Generator | None = None,
                    on_batch: Callable[[], None] | None = None, start: EpochProgress | None = None,
                    after_step: AfterStep | None = None) -> tuple[float, int]:
    """One pass over ``loader``. Returns the mean training loss and the global step reached.

    ``start`` continues an epoch part-way (the loader already positioned after ``start.batches``, see
    ``honed.data.loader.start_epoch``). ``after_step`` runs after every optimizer step, e.g. to save a
    mid-epoch checkpoint; the loss sum it gets stays on the device unless it reads it.
    """
    train_mode(model)
    start = start or EpochProgress()
    loss_sum = torch.tensor(start.loss_sum, dtype=torch.float32, device=runtime.device)  # no host sync per step
    batches = start.batches
    for images, targets in loader:
        set_lr(optimizer, schedule.lr_at(step))
        images = images.to(runtime.device, non_blocking=True)
        targets = targets.to(runtime.device, non_blocking=True)
        inputs, targets = pipeline.train_batch(images, targets, generator)
        with runtime.autocast():
            loss = get_task(task).loss(model(inputs), targets, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        loss_sum += loss.detach()
        batches += 1
        step += 1
        if after_step is not None:
            after_step(step, batches, loss_sum)
        if on_batch is not None:
            on_batch()
    return (loss_sum / max(batches, 1)).item(), step


@torch.no_grad()
def predict_outputs(model: nn.Module, loader, *, runtime: Runtime, pipeline: BatchPipeline, task: str,
                    on_batch: Callable[[], None] | None = None) -> torch.Tensor:
    """Eval-mode outputs for every sample in loader order: probabilities (classify) or values (regress)."""
    eval_mode(model)
    outputs = []
    for images, *_ in loader:
        inputs = pipeline.eval_batch(images.to(runtime.device, non_blocking=True))
        with runtime.autocast():
            out = forward_in_passes(model, inputs).float()
        outputs.append(get_task(task).outputs(out).cpu())
        if on_batch is not None:
            on_batch()
    return torch.cat(outputs)
