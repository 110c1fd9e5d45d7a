"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from honed.errors import HonedError


def build_optimizer(groups: list[dict], *, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or SGD over a strategy's parameter groups, each split so that norms and biases (1-d tensors)
    get no weight decay. Every group keeps its ``lr_scale``; frozen parameters (no gradient) are skipped
    by the optimizer until a strategy unfreezes them."""
    split = []
    for group in groups:
        decay = [p for p in group["params"] if p.ndim > 1]
        no_decay = [p for p in group["params"] if p.ndim <= 1]
        split += [{"params": decay, "weight_decay": weight_decay, "lr_scale": group["lr_scale"]},
                  {"params": no_decay, "weight_decay": 0.0, "lr_scale": group["lr_scale"]}]
    split = [g for g in split if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(split, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(split, lr=lr)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, cycles: int = 1) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based). Pure, so a resumed run needs only the step."""
    if schedule == "constant":
        return 1.0
    if schedule == "cyclic":  # cosine from the peak to ~0 in each of ``cycles`` equal cycles (warmup: first only)
        length = max(1, total_steps // max(1, cycles))
        cycle, within = divmod(step, length)
        if cycle == 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        start = warmup_steps if cycle == 0 else 0
        progress = (within - start) / max(1, length - start)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "onecycle":  # linear up for 30% of training, then cosine down to ~0 (torch's OneCycle shape)
        peak = max(1, int(0.3 * total_steps))
        if step < peak:
            return 1 / 25 + (1 - 1 / 25) * step / peak
        progress = (step - peak) / max(1, total_steps - peak)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate at every step of a run: a pure function of the step, so resuming needs only the step."""

    base_lr: float
    total_steps: int
    warmup_steps: int
    kind: str = "cosine"
    cycles: int = 1  # the cyclic schedule's restarts

    def lr_at(self, step: int) -> float:
        return self.base_lr * lr_factor(step, self.total_steps, self.warmup_steps, self.kind, self.cycles)


def schedule_cycles(epochs: int, cycles: int) -> int:
    """The cyclic schedule's number of cycles: ``cycles``, or for 0 the largest divisor of ``epochs`` up to 5."""
    if cycles < 0 or (cycles and epochs % cycles):
        raise HonedError(f"--cycles must divide --epochs (each cycle is whole epochs), not {cycles} for {epochs} "
                         "epochs")
    return cycles or max(d for d in range(1, min(epochs, 5) + 1) if epochs % d == 0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's learning rate, times each group's ``lr_scale`` (discriminative learning rates)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
