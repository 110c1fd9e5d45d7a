"""Transfer strategies, and the one place that puts a model in train or eval mode.

A frozen batch norm layer must also keep its running statistics frozen, so ``train_mode`` leaves every
BN layer whose parameters are all frozen in eval mode. Every training step goes through ``train_mode``
and every evaluation, prediction and export through ``eval_mode``.
"""

from __future__ import annotations

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


def apply_strategy(model: nn.Module, strategy: str) -> list[nn.Parameter]:
    """Freeze what the strategy freezes and return the parameters left to train."""
    if strategy == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif strategy == "head":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head_module(model).parameters():
            p.requires_grad_(True)
    else:
        raise HonedError(f"unknown strategy {strategy!r}: use full or head")
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
