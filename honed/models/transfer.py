"""Transfer strategies, and the one place that puts a model in train or eval mode.

A strategy decides what trains and how fast: ``param_groups`` freezes what it freezes and returns the
optimizer's parameter groups, each with an ``lr_scale`` (discriminative learning rates); ``on_epoch_start``
may change that while training (gradual unfreezing, head warm-up). Strategies are registered by name:
adding one is a class and a decorator.

A frozen batch norm layer must also keep its running statistics frozen, so ``train_mode`` leaves every
BN layer whose parameters are all frozen in eval mode. Every training step goes through ``train_mode``
and every evaluation, prediction and export through ``eval_mode``.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from honed.errors import HonedError


def head_module(model: nn.Module) -> nn.Module:
    """The classifier head: timm's ``get_classifier()``, or torchvision's ``fc`` / ``classifier`` / ``heads``."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    for name in ("fc", "classifier", "heads", "head"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return module
    raise HonedError(f"cannot find the classifier head of {type(model).__name__}: use --strategy full")


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


class Strategy:
    """Fine-tune everything (the base behaviour). Subclasses override what they change."""

    name = "full"
    needs_pretrained = False  # True: refuses to run from random weights, where it makes no sense

    def __init__(self, **options):
        self.options = options  # stored unchanged, as scikit-learn estimators do

    def param_groups(self, model: nn.Module) -> list[dict]:
        set_trainable(model, True)
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]

    def on_epoch_start(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        """Called before each epoch (1-based); the default changes nothing."""


_STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register_strategy(cls):
    """Class decorator: make a Strategy subclass available by its ``name``; a name registers once."""
    if cls.name in _STRATEGIES:
        raise HonedError(f"transfer strategy {cls.name!r} is registered twice")
    _STRATEGIES[cls.name] = cls
    return cls


def list_strategies(pattern: str = "*") -> list[str]:
    return sorted(n for n in _STRATEGIES if fnmatch.fnmatch(n, pattern))


def create_strategy(name: str, **options) -> Strategy:
    if name not in _STRATEGIES:
        raise HonedError(f"unknown transfer strategy {name!r}: use one of {', '.join(list_strategies())}")
    return _STRATEGIES[name](**options)


@register_strategy
class Full(Strategy):
    """Fine-tune every layer."""

    name = "full"


@register_strategy
class Head(Strategy):
    """Backbone frozen (batch norm statistics too), new head trained."""

    name = "head"

    def param_groups(self, model: nn.Module) -> list[dict]:
        set_trainable(model, False)
        head = head_module(model)
        set_trainable(head, True)
        return [{"params": list(head.parameters()), "lr_scale": 1.0}]


def apply_strategy(model: nn.Module, strategy: str) -> list[nn.Parameter]:
    """Freeze what the strategy freezes and return the parameters left to train."""
    create_strategy(strategy).param_groups(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise HonedError(f"strategy {strategy!r} left nothing to train in this model")
    return trainable


def train_mode(model: nn.Module) -> nn.Module:
    """Train mode, except batch norm layers whose parameters are frozen: their statistics stay fixed too."""
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
    return model


def eval_mode(model: nn.Module) -> nn.Module:
    """Eval mode for everything: no dropout, batch norm from running statistics."""
    return model.eval()
