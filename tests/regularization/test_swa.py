"""Stochastic weight averaging: the average itself, its schedule and resume, and a run where it wins."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import honed
from honed.errors import HonedError
from honed.tracking.ledger import Ledger
from honed.training.fit import train
from honed.optim import LrSchedule
from honed.training.swa import RUNNING_FILE, Swa, SwaSchedule, first_swa_epoch
from tests.training.test_train import tiny_config


def _net(value: float) -> nn.Module:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def test_first_averaged_epoch_and_the_constant_swa_lr():
    assert first_swa_epoch(4, 0.75) == 4 and first_swa_epoch(5, 0.75) == 4 and first_swa_epoch(10, 0.0) == 1
    base = LrSchedule(1e-2, 100, 0, "cosine")
    swa = Swa(run_dir=".", epochs=10, start_epoch=8, swa_lr=5e-4)
    schedule = swa.schedule(base, steps_per_epoch=10)
    assert isinstance(schedule, SwaSchedule)
    assert schedule.lr_at(69) == base.lr_at(69) and schedule.lr_at(70) == schedule.lr_at(99) == 5e-4
    assert Swa(run_dir=".", epochs=10, start_epoch=8).schedule(base, 10) is base  # no --swa-lr: the schedule


def test_the_average_is_the_mean_of_the_epoch_weights_and_survives_a_resume(tmp_path):
    swa = Swa(run_dir=tmp_path, epochs=4, start_epoch=2)
    swa.after_epoch(_net(9.0), 1)  # before the start: not averaged
    swa.after_epoch(_net(1.0), 2)
    swa.after_epoch(_net(2.0), 3)
    assert (tmp_path / RUNNING_FILE).is_file()
    resumed = Swa(run_dir=tmp_path, epochs=4, start_epoch=2, resume=True)
    resumed.after_epoch(_net(2.0), 3)  # a resumed run repeats epoch 3: already in the average
    resumed.after_epoch(_net(6.0), 4)
    weight = resumed.averaged_.module[0].weight
    assert torch.allclose(weight, torch.full_like(weight, 3.0))  # (1 + 2 + 6) / 3
    assert int(resumed.averaged_.n_averaged) == 3


def test_swa_refused_for_the_probe_strategy(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, swa=True)
    config.model.strategy = "probe"
    with pytest.raises(HonedError, match="--swa.*probe"):
        train(config)


def test_swa_run_recalibrates_and_becomes_best_when_it_wins(color_folder, tmp_path):
    # 6 steps of 0.1-momentum statistics leave this run's BN statistics stale (log loss ~0.6); the average,
    # recalibrated on the training images, beats every epoch on log loss
    config = tiny_config(color_folder, tmp_path / "ws", epochs=4, swa=True, swa_start=0.5, metric="log_loss")
    result = train(config)
    run = result.run_dir
    record = json.loads((run / "swa.json").read_text())
    assert record["epochs_averaged"] == 2 and record["first_epoch"] == 3 and record["bn_layers_recalibrated"] > 0
    history = pd.read_csv(run / "metrics.csv")
    assert record["scores"]["log_loss"] < history["log_loss"].min()
    assert record["became_best"] and result.metrics["swa_best"] == 1.0
    assert result.score == pytest.approx(record["scores"]["log_loss"]) == result.metrics["swa_log_loss"]
    best, averaged = load_file(str(run / "best.safetensors")), load_file(str(run / "swa.safetensors"))
    assert all(torch.equal(best[k], averaged[k]) for k in best)
    with Ledger(tmp_path / "ws") as ledger:
        assert ledger.get(run.name).score == pytest.approx(record["scores"]["log_loss"])
    saved = pd.read_parquet(run / "predictions_val.parquet")  # the average's predictions, as reloaded
    probs = honed.load(run).predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(probs, saved[[c for c in saved.columns if c.startswith("p:")]].to_numpy(), atol=1e-5)


@pytest.mark.slow  # ~20 s
def test_swa_that_does_not_beat_the_best_epoch_leaves_it_in_place(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path / "ws", epochs=4, swa=True, swa_start=0.5)  # accuracy: 1.0 ties
    result = train(config)
    record = json.loads((result.run_dir / "swa.json").read_text())
    assert not record["became_best"] and "swa_accuracy" in result.metrics and "swa_best" not in result.metrics
    run = result.run_dir
    best, averaged = load_file(str(run / "best.safetensors")), load_file(str(run / "swa.safetensors"))
    assert not all(torch.equal(best[k], averaged[k]) for k in best)
    assert result.score == pytest.approx(pd.read_csv(result.run_dir / "metrics.csv")["accuracy"].max())
