"""The training step and the evaluation pass: plain functions, explicit arguments, numbers out."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from honed.models.transfer import eval_mode, train_mode
from honed.training.optim import lr_factor, set_lr
from honed.training.runtime import Runtime

Prepare = Callable[[torch.Tensor], torch.Tensor]  # uint8 batch on the device -> model input


def loss_fn(task: str, outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    if task == "classify":
        return F.cross_entropy(outputs.float(), targets, reduction=reduction)
    per_sample = F.mse_loss(outputs.float(), targets.float().view_as(outputs), reduction="none").mean(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, *, runtime: Runtime,
                    prepare: Prepare, task: str, base_lr: float, step: int, total_steps: int,
                    warmup_steps: int, schedule: str, grad_clip: float,
                    on_batch: Callable[[], None] | None = None) -> tuple[float, int]:
    """One pass over ``loader``. Returns the mean training loss and the global step reached."""
    train_mode(model)
    loss_sum = torch.zeros((), device=runtime.device)  # summed on the device: no host sync per step
    batches = 0
    for images, targets in loader:
        set_lr(optimizer, base_lr * lr_factor(step, total_steps, warmup_steps, schedule))
        images = prepare(images.to(runtime.device, non_blocking=True))
        targets = targets.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            loss = loss_fn(task, model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        loss_sum += loss.detach()
        batches += 1
        step += 1
        if on_batch is not None:
            on_batch()
    return (loss_sum / max(batches, 1)).item(), step


@torch.no_grad()
def predict_outputs(model: nn.Module, loader, *, runtime: Runtime, prepare: Prepare, task: str,
                    on_batch: Callable[[], None] | None = None) -> torch.Tensor:
    """Eval-mode outputs for every sample in loader order: probabilities (classify) or values (regress)."""
    eval_mode(model)
    outputs = []
    for images, *_ in loader:
        images = prepare(images.to(runtime.device, non_blocking=True))
        with runtime.autocast():
            out = model(images).float()
        outputs.append((out.softmax(dim=1) if task == "classify" else out).cpu())
        if on_batch is not None:
            on_batch()
    return torch.cat(outputs)
