"""Weight decay shrinks weights only: norms and biases (1-d tensors) are left alone, whatever the strategy."""

from __future__ import annotations

import pytest
import torch

from honed.config import ModelConfig
from honed.models.factory import build_model
from honed.models.strategies import create_strategy
from honed.optim import build_optimizer


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_decay_applies_to_weights_and_never_to_norms_or_biases(name):
    model = build_model(ModelConfig(name="test_resnet", head_bn=True), 3)
    groups = create_strategy("gradual").param_groups(model)  # several lr_scale groups, each split in two
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = build_optimizer(groups, name=name, lr=0.1, weight_decay=0.5)
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    assert {g["lr_scale"] for g in optimizer.param_groups} == {g["lr_scale"] for g in groups}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no loss gradient: any change is the decay alone
    optimizer.step()
    for n, p in model.named_parameters():
        if p.ndim <= 1:  # batch norm scales and shifts, biases (the head's BatchNorm1d too)
            assert id(p) not in decay and torch.equal(p, before[n]), n
        elif before[n].abs().sum() > 0:
            assert id(p) in decay and p.abs().sum() < before[n].abs().sum(), n
