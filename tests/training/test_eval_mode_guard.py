"""Guard: inference is deterministic and independent of the batch size, which fails if dropout or batch
statistics leak into eval mode."""

from __future__ import annotations

import torch

import honed
from honed.training.fit import train
from tests.training.test_train import tiny_config


def test_predictions_identical_for_batch_of_1_and_256(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.drop_rate = 0.5  # dropout in the model: must be off at inference
    predictor = honed.load(train(config).run_dir)
    images = torch.randint(0, 256, (256, 3, 16, 16), dtype=torch.uint8)
    together = predictor.predict_batch(images)
    one_by_one = torch.cat([torch.as_tensor(predictor.predict_batch(images[i:i + 1])) for i in range(256)])
    again = predictor.predict_batch(images)
    assert torch.equal(torch.as_tensor(together), torch.as_tensor(again))  # deterministic
    torch.testing.assert_close(torch.as_tensor(together), one_by_one, rtol=1e-5, atol=1e-6)
    assert not predictor.model.training
