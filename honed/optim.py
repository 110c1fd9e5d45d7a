"""Optimizers and learning-rate schedules, each registered by name (``--optimizer``, ``--schedule``).

An optimizer builder takes the parameter groups (already split for weight decay) and the peak learning rate;
a schedule is a pure function of the step giving the multiplier of that peak, so a resumed run needs only
the step. Adding either is a function and a decorator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from honed.errors import HonedError
from honed.registry import Registry

OptimizerBuilder = Callable[[list[dict], float], torch.optim.Optimizer]  # (groups, lr) -> optimizer
Schedule = Callable[[int, int, int, int], float]  # (step, total_steps, warmup_steps, cycles) -> lr factor

# Registration order is the order `--optimizer` / `--schedule` messages list: the default first.
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULES: Registry[Schedule] = Registry("learning-rate schedule")


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr)


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def build_optimizer(groups: list[dict], *, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` (AdamW, SGD) over a strategy's parameter groups, each split so that norms and biases (1-d tensors)
    get no weight decay. Every group keeps its ``lr_scale``; frozen parameters (no gradient) are skipped
    by the optimizer until a strategy unfreezes them."""
    split = []
    for group in groups:
        decay = [p for p in group["params"] if p.ndim > 1]
        no_decay = [p for p in group["params"] if p.ndim <= 1]
        split += [{"params": decay, "weight_decay": weight_decay, "lr_scale": group["lr_scale"]},
                  {"params": no_decay, "weight_decay": 0.0, "lr_scale": group["lr_scale"]}]
    split = [g for g in split if g["params"]]
    return OPTIMIZERS[name](split, lr)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, cycles: int = 1) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based). Pure, so a resumed run needs only the step."""
    return SCHEDULES[schedule](step, total_steps, warmup_steps, cycles)


@SCHEDULES.register("cosine")
def _cosine(step: int, total_steps: int, warmup_steps: int, cycles: int) -> float:
    """Linear warmup, then cosine from the peak to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULES.register("onecycle")
def _onecycle(step: int, total_steps: int, warmup_steps: int, cycles: int) -> float:
    """Linear up for 30% of training, then cosine down to ~0 (torch's OneCycle shape); no separate warmup."""
    peak = max(1, int(0.3 * total_steps))
    if step < peak:
        return 1 / 25 + (1 - 1 / 25) * step / peak
    progress = (step - peak) / max(1, total_steps - peak)
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULES.register("constant")
def _constant(step: int, total_steps: int, warmup_steps: int, cycles: int) -> float:
    """The peak throughout (no warmup)."""
    return 1.0


@SCHEDULES.register("cyclic")
def _cyclic(step: int, total_steps: int, warmup_steps: int, cycles: int) -> float:
    """Cosine from the peak to ~0 in each of ``cycles`` equal cycles (warmup in the first only): snapshots."""
    length = max(1, total_steps // max(1, cycles))
    cycle, within = divmod(step, length)
    if cycle == 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    start = warmup_steps if cycle == 0 else 0
    progress = (within - start) / max(1, length - start)
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
