"""Training without a validation split (``DataConfig(validation=False)``, what a refit uses): every labelled
image trains, the given epochs run with nothing to select on, and the last weights are the run's."""

from __future__ import annotations

import math

import pandas as pd

from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.tracking.ledger import Ledger
from honed.training.fit import train


def _config(source, workspace, strategy: str) -> RunConfig:
    return RunConfig(name="refit", workspace=str(workspace), data=DataConfig(source=str(source), validation=False),
                     model=ModelConfig(name="test_resnet", strategy=strategy),
                     preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(epochs=2, batch_size=8, lr=3e-3, workers=0, seed=0, patience=1))


def test_a_run_without_validation_trains_every_image_for_its_epochs(color_folder, tmp_path, one_thread):
    result = train(_config(color_folder, tmp_path / "ws", "full"))
    run = result.run_dir
    manifest = pd.read_parquet(run / "manifest.parquet")
    assert set(manifest["split"]) == {"train"} and len(manifest) == 24  # no image held out
    history = pd.read_csv(run / "metrics.csv")
    assert list(history["epoch"]) == [1, 2] and "accuracy" not in history  # patience has nothing to stop on
    assert result.best_epoch == 2 and math.isnan(result.score)
    assert (run / "best.safetensors").read_bytes() == (run / "last.safetensors").read_bytes()
    assert not (run / "predictions_val.parquet").exists()
    with Ledger(tmp_path / "ws") as ledger:
        record = ledger.get("refit")
    assert record.status == "done" and record.score is None


def test_a_probe_without_validation_fits_on_every_image(color_folder, tmp_path, one_thread):
    result = train(_config(color_folder, tmp_path / "ws", "probe"))
    assert set(pd.read_parquet(result.run_dir / "manifest.parquet")["split"]) == {"train"}
    assert math.isnan(result.score) and "train_loss" in result.metrics
