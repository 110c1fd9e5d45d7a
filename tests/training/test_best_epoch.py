"""Which epoch is the best: the main metric first, the validation loss between epochs that tie on it.

On a small validation set accuracy moves in whole images and stays level for epochs while the loss still
falls; the first epoch of such a tie is the least trained one, and its count is what a refit reuses.
"""

from __future__ import annotations

import math

import pandas as pd
from safetensors.torch import load_file

from honed.artifacts.run_folder import RunFolder
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.metrics import best_epoch_row, better_epoch
from honed.report.compare import best_epoch_metrics
from honed.training.fit import train
from honed.workflow.refit import chosen_epochs


def _row(epoch: int, accuracy: float | None, val_loss: float | None) -> dict:
    row = {"epoch": epoch, "train_loss": 1.0 / epoch}
    if accuracy is not None:
        row["accuracy"] = accuracy
    if val_loss is not None:
        row["val_loss"] = val_loss
    return row


def test_a_tie_on_the_metric_goes_to_the_lower_validation_loss():
    first, level = _row(1, 0.9, 0.30), _row(2, 0.9, 0.25)
    assert better_epoch("accuracy", level, first) and not better_epoch("accuracy", first, level)
    assert not better_epoch("accuracy", _row(3, 0.9, 0.25), level)  # a full tie keeps the earlier epoch
    assert better_epoch("accuracy", _row(3, 0.92, 0.40), level)  # the metric decides before the loss
    assert not better_epoch("accuracy", _row(3, 0.88, 0.10), level)


def test_the_direction_follows_the_metric_and_missing_values_never_win():
    assert better_epoch("log_loss", {"log_loss": 0.2, "val_loss": 0.3}, {"log_loss": 0.3, "val_loss": 0.2})
    assert better_epoch("mae", {"mae": 1.0, "val_loss": 0.5}, {"mae": 1.0, "val_loss": 0.6})
    assert not better_epoch("accuracy", _row(2, math.nan, 0.1), _row(1, 0.5, 0.9))
    assert better_epoch("accuracy", _row(2, 0.5, 0.9), _row(1, math.nan, 0.1))
    assert not better_epoch("accuracy", _row(2, 0.9, math.nan), _row(1, 0.9, 0.5))  # nothing to break the tie
    rows = [_row(1, None, None), _row(2, None, None)]  # no validation: the last epoch
    assert best_epoch_row(rows, "accuracy")["epoch"] == 2
    assert best_epoch_row([], "accuracy") is None


def test_training_keeps_the_weights_of_the_epoch_the_rule_names(color_folder, tmp_path, one_thread):
    """Red against blue: validation accuracy reaches 1 early and stays there while the loss keeps falling."""
    config = RunConfig(name="colors", workspace=str(tmp_path / "ws"),
                       data=DataConfig(source=str(color_folder), val_fraction=0.25),
                       model=ModelConfig(name="test_resnet", strategy="full"),
                       preprocess=PreprocessConfig(image_size=16),
                       train=TrainConfig(epochs=5, batch_size=8, lr=3e-3, workers=0, seed=0))
    result = train(config)
    history = pd.read_csv(result.run_dir / "metrics.csv")
    top = history[history["accuracy"] == history["accuracy"].max()]
    assert len(top) >= 2 and top["val_loss"].nunique() == len(top)  # the case this rule is for: a tie
    expected = int(top.loc[top["val_loss"].idxmin(), "epoch"])
    assert expected != int(top["epoch"].iloc[0])  # the first of the tie is not the one kept
    assert result.best_epoch == expected
    assert result.metrics["val_loss"] == history.loc[history["epoch"] == expected, "val_loss"].item()
    best, last = (load_file(str(result.run_dir / f"{w}.safetensors")) for w in ("best", "last"))
    same = all((best[k] == last[k]).all() for k in best)
    assert same == (expected == int(history["epoch"].iloc[-1]))  # the weights saved are that epoch's
    assert chosen_epochs(RunFolder(result.run_dir)) == expected  # what a refit would train
    assert best_epoch_metrics(result.run_dir, "accuracy", None)[1] == expected  # what `honed compare` shows
