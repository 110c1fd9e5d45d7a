"""--head-bn and --drop-path: the architecture they build, how every strategy trains the new head, and runs
that reload, export and predict with it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

import honed
from honed.config import ModelConfig, RunConfig, TrainConfig
from honed.errors import HonedError
from honed.models.factory import build_model
from honed.models.stages import head_name
from honed.models.strategies import create_strategy, head_module, list_strategies, reset_new_head, train_mode
from honed.training.fit import train
from tests.training.test_train import tiny_config


def _config(name="test_resnet", **model) -> ModelConfig:
    return ModelConfig(name=name, **model)


def test_timm_head_is_norm_dropout_linear_under_the_head_name():
    model = build_model(_config(head_bn=True, drop_rate=0.3), 5)
    head = model.get_classifier()
    assert isinstance(head, nn.Sequential) and head_name(model) == "fc"
    assert [type(m) for m in head] == [nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert head[0].num_features == head[2].in_features and head[2].out_features == 5 and head[1].p == 0.3
    assert model.drop_rate == 0.0  # timm's own dropout before the head is off: the only one sits after the norm
    assert model(torch.randn(4, 3, 16, 16)).shape == (4, 5)


def test_torchvision_head_replaces_the_dropout_before_the_classifier():
    # torchvision's classifier: Linear, Hardswish, Dropout, Linear
    model = build_model(_config("mobilenet_v3_small", head_bn=True), 3)
    classifier = model.classifier
    assert isinstance(classifier[2], nn.Identity)  # its dropout moved after the norm, with its p
    block = classifier[3]
    assert [type(m) for m in block] == [nn.BatchNorm1d, nn.Dropout, nn.Linear] and block[1].p == 0.2
    assert head_name(model) == "classifier"
    chosen = build_model(_config("mobilenet_v3_small", head_bn=True, drop_rate=0.4), 3)
    assert chosen.classifier[3][1].p == 0.4
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("strategy", [s for s in list_strategies() if s != "probe"])
def test_every_strategy_trains_the_whole_new_head(strategy):
    model = build_model(_config(head_bn=True), 4)
    s = create_strategy(strategy, unfreeze=0, pretrained=True)
    groups = s.param_groups(model)
    s.on_epoch_start(model, None, 1, 5)  # the first epoch: head-only for full (warm-up) and gradual
    head = list(head_module(model).parameters())
    assert len(head) == 4 and all(p.requires_grad for p in head)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) in in_groups for p in head)
    train_mode(model)
    assert model.fc[0].training  # its batch statistics update while the head trains
    if strategy == "head":
        assert not model.layer1[0].conv1.weight.requires_grad and not model.bn1.training


def test_reset_new_head_zeroes_only_the_last_linear(tmp_path):
    plain = build_model(_config(), 7)  # weights of another run: backbone fits, head does not
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(tmp_path / "w.safetensors"))
    config = _config(head_bn=True, weights=str(tmp_path / "w.safetensors"))
    model = build_model(config, 3)
    zeroed = reset_new_head(model, model_name="test_resnet", pretrained=False, weights=config.weights)
    assert sorted(zeroed) == ["fc.2.bias", "fc.2.weight"]
    assert not model.fc[2].weight.any()
    # the norm keeps scale 1: a zero scale would block every gradient to the linear after it
    assert torch.equal(model.fc[0].weight, torch.ones(model.fc[0].num_features))
    assert torch.equal(model.layer1[0].conv1.weight, plain.layer1[0].conv1.weight)  # the backbone as loaded


def test_weights_of_a_head_bn_run_load_their_head_too(tmp_path):
    first = build_model(_config(head_bn=True), 3)
    with torch.no_grad():
        first.fc[0].weight.fill_(2.0)
        first.fc[2].weight.fill_(0.5)
    save_file({k: v.contiguous() for k, v in first.state_dict().items()}, str(tmp_path / "w.safetensors"))
    second = build_model(_config(head_bn=True, weights=str(tmp_path / "w.safetensors")), 3)
    assert torch.equal(second.fc[0].weight, first.fc[0].weight) and torch.equal(second.fc[2].weight, first.fc[2].weight)


def test_head_bn_needs_two_images_per_batch():
    with pytest.raises(HonedError, match="--batch-size must be at least 2"):
        RunConfig(model=_config(head_bn=True), train=TrainConfig(batch_size=1))


def test_drop_path_reaches_timm_and_is_refused_where_it_cannot():
    model = build_model(_config(drop_path=0.2), 3)
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2)
    assert not any(type(m).__name__ == "DropPath" for m in build_model(_config(), 3).modules())
    with pytest.raises(HonedError, match="torchvision.*does not take it"):
        build_model(_config("mobilenet_v3_small", drop_path=0.1), 3)  # a torchvision-only name
    with pytest.raises(HonedError, match="no stochastic depth"):
        build_model(_config("vgg11", drop_path=0.1), 3)  # timm's VGG has no drop_path_rate


def test_new_fields_validate_and_round_trip_through_yaml():
    with pytest.raises(HonedError, match="--drop-path"):
        ModelConfig(drop_path=1.0)
    with pytest.raises(HonedError, match="--swa-start"):
        TrainConfig(swa_start=1.0)
    with pytest.raises(HonedError, match="--swa-lr"):
        TrainConfig(swa_lr=-1.0)
    config = RunConfig(model=_config(head_bn=True, drop_path=0.1))
    config.train.swa, config.train.swa_start, config.train.swa_lr = True, 0.5, 1e-4
    again = RunConfig.from_dict(config.to_dict())
    assert again.model.head_bn and again.model.drop_path == 0.1
    assert (again.train.swa, again.train.swa_start, again.train.swa_lr) == (True, 0.5, 1e-4)


@pytest.mark.slow  # ~30 s: trains, reloads and exports with ONNX
def test_a_head_bn_run_reloads_exports_and_predicts_as_saved(color_folder, tmp_path):
    from honed.export.bundle import export_bundle

    config = tiny_config(color_folder, tmp_path / "ws", epochs=2)
    config.model.head_bn, config.model.drop_rate, config.model.drop_path = True, 0.3, 0.1
    run = train(config).run_dir
    saved = pd.read_parquet(run / "predictions_val.parquet")
    expected = saved[[c for c in saved.columns if c.startswith("p:")]].to_numpy()
    predictor = honed.load(run)
    assert isinstance(predictor.model.fc[0], nn.BatchNorm1d)
    np.testing.assert_allclose(predictor.predict_proba(saved["path"].tolist(), workers=0), expected, atol=1e-5)
    report = export_bundle(run, tmp_path / "bundle", formats=["onnx"])
    assert report.passed
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in predictor.model.modules())
    fused = json.loads((report.path / "bundle.json").read_text())["parity"]["fused_pairs"]
    assert fused == norms  # the head's BatchNorm1d is folded into its Linear too, not only the conv norms
    bundled = honed.load(report.path)
    np.testing.assert_allclose(bundled.predict_proba(saved["path"].tolist(), workers=0), expected, atol=1e-5)
    card = (report.path / "model_card.md").read_text()
    assert "--head-bn" in card and "drop path): 0.1" in card and "dropout before the head: 0.3" in card
