"""The head strategy on features computed once: the same head as the loop over images, and the cases that
must keep running the backbone every epoch."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from honed.models.strategies import create_strategy
from honed.progress import LogReporter
from honed.runtime import setup_runtime
from honed.training.fit import train
from honed.training.frozen_head import why_not_cached
from tests.training.test_train import tiny_config


class Messages(LogReporter):
    def __init__(self):
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _head_run(source, workspace, name: str, *, head_bn: bool = False, **train_kwargs):
    config = tiny_config(source, workspace, **train_kwargs)
    config.name, config.model.strategy, config.model.head_bn = name, "head", head_bn
    config.model.drop_rate = 0.3 if head_bn else 0.0  # with --head-bn the dropout sits in the head
    messages = Messages()
    result = train(config, reporter=messages)
    cached = any("frozen features computed once" in line for line in messages.lines)
    assert cached == (config.train.feature_cache == "auto"), messages.lines
    return result


@pytest.mark.parametrize("head_bn", [False, True])
def test_cached_features_train_the_same_head_as_the_images(color_folder, tmp_path, one_thread, head_bn):
    options = dict(head_bn=head_bn, epochs=3, label_smoothing=0.1)
    cached = _head_run(color_folder, tmp_path / "ws", "cached", **options)
    images = _head_run(color_folder, tmp_path / "ws", "images", feature_cache="off", **options)
    a, b = load_file(cached.run_dir / "last.safetensors"), load_file(images.run_dir / "last.safetensors")
    assert a.keys() == b.keys()
    assert a["fc.bias" if not head_bn else "fc.2.bias"].abs().max() > 1e-3  # the head did train
    for key in a:  # the backbone unchanged, the head (with its batch norm statistics) trained alike
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(torch.tensor(cached.history["train_loss"].to_numpy()),
                               torch.tensor(images.history["train_loss"].to_numpy()), rtol=1e-4, atol=1e-5)
    assert cached.history["accuracy"].tolist() == images.history["accuracy"].tolist()


def test_mid_epoch_checkpoints_work_on_cached_features(color_folder, tmp_path, one_thread):
    result = _head_run(color_folder, tmp_path / "ws", "steps", epochs=2, batch_size=4, checkpoint_every=2)
    assert len(result.history) == 2 and (result.run_dir / "state.json").is_file()


def _why(model_name="test_resnet", strategy="head", **changes) -> str:
    config = tiny_config(".", ".")
    for key, value in changes.items():
        section = config.model if hasattr(config.model, key) else config.train
        setattr(section, key, value)
    from honed.models.factory import build_model

    model = build_model(config.model, 2)
    return why_not_cached(config, create_strategy(strategy), model, setup_runtime("cpu"))


def test_the_backbone_runs_every_epoch_when_something_in_front_of_the_head_changes():
    assert _why() == ""
    assert "augmentation" in _why(augment="hflip")
    assert "trains more" in _why(strategy="full")
    assert "trains more" in _why(strategy="gradual")
    assert "--feature-cache off" in _why(feature_cache="off")
    assert "swa" in _why(swa=True)
    assert "dropout" in _why(drop_rate=0.2)  # timm's dropout in front of the classifier
    assert _why(drop_rate=0.2, head_bn=True) == ""  # the dropout is in the head, which trains on the features
    assert "stochastic depth" in _why(drop_path=0.1)
