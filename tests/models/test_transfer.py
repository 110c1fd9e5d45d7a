"""Transfer strategies: stages found from the model, and each strategy freezing exactly what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file

from honed.config import ModelConfig, RunConfig
from honed.errors import HonedError
from honed.models.factory import build_model
from honed.models.stages import backbone_stages, head_name, stage_parameters
from honed.models.strategies import GRADUAL_FLOOR, create_strategy, describe_strategies, list_strategies
from honed.training.fit import train
from honed.optim import build_optimizer, set_lr
from tests.training.test_train import _StopAfter, tiny_config


def _covers_every_parameter_once(model: torch.nn.Module) -> bool:
    stages = backbone_stages(model)
    ids = [id(p) for names in stages for p in stage_parameters(model, names)]
    ids += [id(p) for p in model.get_submodule(head_name(model)).parameters()]
    return sorted(ids) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_vit", "tf_efficientnet_lite0"])
def test_timm_stages_come_from_feature_info_and_cover_the_backbone(name):
    model = timm.create_model(name, num_classes=3)
    stages = backbone_stages(model)
    assert _covers_every_parameter_once(model)
    marks = [entry["module"] for entry in model.feature_info]
    learned = [m for m in marks if any(True for _ in model.get_submodule(m).parameters())]
    assert all(any(mark in names for names in stages) for mark in learned)  # every reduction stage is there
    assert len(stages) in (len(marks), len(marks) + 1), (stages, marks)  # + a stem split off, or not
    assert head_name(model) not in sum(stages, [])


def test_efficientnet_lite0_stages_stem_first_head_side_last():
    stages = backbone_stages(timm.create_model("tf_efficientnet_lite0", num_classes=3))
    assert stages[0] == ["conv_stem", "bn1"]
    assert stages[1:5] == [["blocks.0"], ["blocks.1"], ["blocks.2"], ["blocks.3", "blocks.4"]]
    assert stages[-1] == ["blocks.5", "blocks.6", "conv_head", "bn2"]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "squeezenet1_0"])
def test_torchvision_stages_follow_top_level_children(name):
    model = torchvision.models.get_model(name)
    stages = backbone_stages(model)
    assert _covers_every_parameter_once(model)
    assert len(stages) >= 4
    if name == "resnet18":
        assert stages == [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]


def test_registry_lists_every_strategy_and_refuses_unknown_names():
    assert set(list_strategies()) == {"probe", "head", "partial", "gradual", "full", "scratch"}
    assert all(describe_strategies().values())
    with pytest.raises(HonedError, match="use one of"):
        create_strategy("nope")
    with pytest.raises(HonedError, match="advisor"):
        create_strategy("auto")
    with pytest.raises(HonedError, match="--unfreeze"):
        ModelConfig(strategy="partial", unfreeze=-1)
    with pytest.raises(HonedError, match="--head-model"):
        ModelConfig(strategy="probe", head_model="forest")


def test_gradual_learning_rates_fall_from_head_to_stem():
    model = timm.create_model("test_resnet", num_classes=2)
    groups = create_strategy("gradual").param_groups(model)
    scales = [g["lr_scale"] for g in groups]
    assert scales[0] == 1.0  # the head
    assert scales[1] == pytest.approx(GRADUAL_FLOOR)  # the stem
    assert scales[1:] == sorted(scales[1:]) and scales[-1] < 1.0
    optimizer = build_optimizer(groups, name="adamw", lr=0.01, weight_decay=0.0)
    set_lr(optimizer, 0.01)
    assert min(g["lr"] for g in optimizer.param_groups) == pytest.approx(0.01 * GRADUAL_FLOOR)
    assert [create_strategy("gradual").stages_at(e, 5, 5) for e in range(1, 6)] == [0, 2, 3, 4, 5]
    assert [create_strategy("gradual", unfreeze=2).stages_at(e, 3, 5) for e in range(1, 4)] == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------- freezing


def _initial_state(config: RunConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(config.train.seed)
    return {k: v.clone() for k, v in build_model(RunConfig.from_dict(config.to_dict()).model, 2).state_dict().items()}


def _changed_prefixes(before: dict, after: dict) -> set[str]:
    """Top-level module names (fc, layer3, ...) of every tensor that changed, buffers included."""
    return {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}


def _assert_frozen(before: dict, after: dict, frozen: tuple[str, ...], trained: tuple[str, ...]) -> None:
    for key in after:
        if key.startswith(frozen):  # weights, biases, BN running mean/var and batch counters
            assert torch.equal(before[key], after[key]), f"{key} changed but is frozen"
    changed = _changed_prefixes(before, after)
    assert set(trained) <= changed, (trained, changed)


def test_partial_fine_tunes_only_the_last_n_stages(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.strategy, config.model.unfreeze = "partial", 2
    before = _initial_state(config)
    after = load_file(str(train(config).run_dir / "last.safetensors"))
    _assert_frozen(before, after, frozen=("conv1.", "bn1.", "layer1.", "layer2."), trained=("layer3", "layer4", "fc"))


def _resume(config: RunConfig, stop_after: int | None = None):
    """Continue the interrupted run (optionally interrupting it again after ``stop_after``)."""
    saved = RunConfig.from_yaml(Path(config.workspace) / config.name / "config.yaml")
    if stop_after is None:
        return train(saved, resume=True)
    with pytest.raises(KeyboardInterrupt):
        train(saved, resume=True, reporter=_StopAfter(stop_after))


def _last(config: RunConfig) -> dict[str, torch.Tensor]:
    return load_file(str(Path(config.workspace) / config.name / "last.safetensors"))


def test_gradual_keeps_stages_frozen_until_their_epoch(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=3)
    config.model.strategy = "gradual"  # test_resnet: 5 stages; epoch 1 head, epoch 2 last 3 stages, epoch 3 all
    before = _initial_state(config)
    with pytest.raises(KeyboardInterrupt):
        train(config, reporter=_StopAfter(1))
    assert _changed_prefixes(before, _last(config)) == {"fc"}
    _resume(config, stop_after=2)
    _assert_frozen(before, _last(config), frozen=("conv1.", "bn1.", "layer1."),
                   trained=("layer2", "layer3", "layer4", "fc"))
    _resume(config)
    assert {"conv1", "bn1", "layer1", "fc"} <= _changed_prefixes(before, _last(config))


def test_full_warms_the_head_up_first_from_pretrained_weights(color_folder, tmp_path):
    from honed.artifacts.weights import save_weights

    torch.manual_seed(1)
    save_weights(tmp_path / "start.safetensors", timm.create_model("test_resnet", num_classes=2))
    config = tiny_config(color_folder, tmp_path, epochs=3)
    config.model.weights = str(tmp_path / "start.safetensors")  # its head fits: kept, not reset
    before = {k: v.clone() for k, v in load_file(str(tmp_path / "start.safetensors")).items()}
    with pytest.raises(KeyboardInterrupt):
        train(config, reporter=_StopAfter(1))
    assert _changed_prefixes(before, _last(config)) == {"fc"}
    _resume(config)
    assert {"conv1", "bn1", "layer1", "layer4", "fc"} <= _changed_prefixes(before, _last(config))


def test_scratch_ignores_pretrained_weights(color_folder, tmp_path):
    from honed.artifacts.weights import save_weights

    torch.manual_seed(1)
    save_weights(tmp_path / "start.safetensors", timm.create_model("test_resnet", num_classes=2))
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.strategy, config.model.weights = "scratch", str(tmp_path / "start.safetensors")
    result = train(config)
    saved = RunConfig.from_yaml(result.run_dir / "config.yaml")
    assert saved.model.weights == "" and saved.model.pretrained is False
    plain = train(tiny_config(color_folder, tmp_path / "plain", epochs=1))  # same seed, no weights: same start
    after, same = _last(config), load_file(str(plain.run_dir / "last.safetensors"))
    assert all(torch.equal(after[k], same[k]) for k in after)


def test_a_new_head_on_pretrained_weights_starts_at_zero():
    from honed.models.strategies import reset_new_head
    from honed.models.backbones import create_backbone_with_pretrained

    model = create_backbone_with_pretrained("tf_efficientnet_lite0", 10, pretrained=True, weights=None)
    assert sorted(reset_new_head(model, model_name="tf_efficientnet_lite0", pretrained=True, weights="")) == [
        "classifier.bias", "classifier.weight"]
    assert not model.classifier.weight.any() and model.conv_head.weight.any()
    imagenet = create_backbone_with_pretrained("tf_efficientnet_lite0", 1000, pretrained=True, weights=None)
    assert reset_new_head(imagenet, model_name="tf_efficientnet_lite0", pretrained=True, weights="") == []


def test_weights_from_a_run_on_other_labels_get_a_new_head(tmp_path):
    """honed as its own pretrainer: a run's weights moved to a task with as many classes but other labels keep
    the backbone, not the head (a head for the wrong labels started head-only training at 35.6% instead of
    58.7% in benchmarks/results_pretrainer.md)."""
    import json

    import timm

    from honed.models.strategies import reset_new_head
    from honed.artifacts.weights import save_weights

    source = timm.create_model("test_resnet", num_classes=2)
    run = tmp_path / "source-run"
    run.mkdir()
    save_weights(run / "best.safetensors", source)
    (run / "labels.json").write_text(json.dumps({"task": "classify", "classes": ["cat", "dog"]}))
    weights = str(run / "best.safetensors")

    same = timm.create_model("test_resnet", num_classes=2)
    same.load_state_dict(source.state_dict())
    assert reset_new_head(same, model_name="test_resnet", pretrained=False, weights=weights,
                          classes=["cat", "dog"]) == []
    other = timm.create_model("test_resnet", num_classes=2)
    other.load_state_dict(source.state_dict())
    zeroed = reset_new_head(other, model_name="test_resnet", pretrained=False, weights=weights,
                            classes=["car", "truck"])
    assert sorted(zeroed) == ["fc.bias", "fc.weight"] and not other.fc.weight.any()
    assert torch.equal(other.conv1[0].weight if isinstance(other.conv1, torch.nn.Sequential) else other.conv1.weight,
                       source.conv1[0].weight if isinstance(source.conv1, torch.nn.Sequential) else source.conv1.weight)


@pytest.mark.slow
def test_gradual_under_two_process_data_parallel_rebuilds_ddp_and_ranks_agree(color_folder, tmp_path):
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
               "-m", "honed", "train", str(color_folder), "--model", "test_resnet", "--image-size", "16",
               "--epochs", "3", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--name", "ddp",
               "--strategy", "gradual", "--workspace", str(ws), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((ws / "ddp" / "distributed.json").read_text())
    assert report["agree"] is True and len(set(report["weights_sha256"])) == 1
