"""Augmentation reaches training batches only; early stopping and label smoothing are wired in."""

from __future__ import annotations

import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from honed.training.fit import train
from tests.training.test_train import tiny_config


def test_validation_batches_identical_across_epochs_while_training_batches_are_augmented(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=3)
    config.train.augment = "noise:0.3@1,hflip"
    seen = {"train": [], "eval": []}

    def capture(module, args):
        if type(module).__name__ == "ResNet":  # the top-level model only
            seen["train" if module.training else "eval"].append(args[0].detach().clone())

    handle = register_module_forward_pre_hook(capture)
    try:
        train(config)
    finally:
        handle.remove()
    per_epoch = len(seen["eval"]) // 3
    first, second, third = (torch.cat(seen["eval"][i * per_epoch:(i + 1) * per_epoch]) for i in range(3))
    assert torch.equal(first, second) and torch.equal(second, third)
    # the same training images differ from epoch to epoch (augmentation and shuffling), and differ from eval inputs
    assert not torch.equal(seen["train"][0], seen["train"][len(seen["train"]) // 3])
    def roughness(x):  # mean step between horizontal neighbours: noise raises it
        return (x[..., 1:] - x[..., :-1]).abs().mean()

    assert roughness(torch.cat(seen["train"])) > 1.5 * roughness(first)


def test_early_stopping_stops_when_the_metric_stalls(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=6, lr=1e-9)  # nothing improves after epoch 1
    config.train.patience = 2
    result = train(config)
    assert list(result.history["epoch"]) == [1, 2, 3]


def test_mixup_and_label_smoothing_train(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=3)
    config.train.augment, config.train.label_smoothing = "mixup:0.4", 0.1
    assert train(config).metrics["accuracy"] >= 0.8
