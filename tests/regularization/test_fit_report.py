"""The fit report on synthetic learning curves of each kind, and on a real over-trained run."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from honed.analyze.fit_report import diagnose_fit, run_fit_report
from honed.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def _history(train, val, accuracy=None) -> pd.DataFrame:
    frame = pd.DataFrame({"epoch": range(1, len(train) + 1), "train_loss": train, "val_loss": val})
    if accuracy is not None:
        frame["accuracy"] = accuracy
    return frame


def _config(**train) -> RunConfig:
    return RunConfig(model=ModelConfig(name="test_resnet", drop_rate=0.1, strategy="full"),
                     train=TrainConfig(epochs=10, lr=1e-3, **train))


def test_overfitting_val_loss_turns_while_train_loss_falls():
    train = [2.0, 1.2, 0.8, 0.5, 0.3, 0.15, 0.08, 0.04, 0.02, 0.01]
    val = [2.0, 1.4, 1.1, 1.0, 1.05, 1.15, 1.3, 1.45, 1.6, 1.7]
    report = diagnose_fit(_history(train, val, np.linspace(0.3, 0.6, 10)), metric="accuracy", num_classes=10,
                          config=_config(weight_decay=0.01))
    assert report.verdict == "overfitting"
    assert report.numbers["best_val_epoch"] == 4 and report.numbers["val_rise"] == pytest.approx(0.7)
    assert report.numbers["gap_end"] > report.numbers["gap_at_best"]
    text = " ".join(report.suggestions)
    for flag in ("--dropout 0.3", "--weight-decay 0.05", "--augment", "hflip", "--epochs 4", "--label-smoothing"):
        assert flag in text, flag
    assert "epoch 4" in report.evidence[0]


def test_underfitting_still_falling_steeply_at_the_end():
    train = [2.3, 2.0, 1.8, 1.6, 1.45, 1.3, 1.15, 1.0, 0.88, 0.77]
    val = [2.3, 2.05, 1.85, 1.7, 1.55, 1.42, 1.3, 1.18, 1.07, 0.98]
    report = diagnose_fit(_history(train, val), num_classes=10, config=_config())
    assert report.verdict == "underfitting"
    assert report.numbers["train_drop_per_epoch"] >= 0.05
    text = " ".join(report.suggestions)
    assert "--epochs 20" in text and "--lr 0.002" in text


def test_underfitting_training_loss_ends_high_with_a_frozen_backbone():
    train = [2.30, 2.22, 2.18, 2.16, 2.15, 2.145, 2.14, 2.14, 2.139, 2.139]  # flat, near chance log(10) = 2.30
    val = [2.30, 2.24, 2.20, 2.19, 2.18, 2.18, 2.175, 2.175, 2.174, 2.174]
    config = _config(augment="hflip", weight_decay=0.05)
    config.model.strategy = "head"
    report = diagnose_fit(_history(train, val), num_classes=10, config=config)
    assert report.verdict == "underfitting"
    assert report.numbers["train_loss_height"] > 0.9
    text = " ".join(report.suggestions)
    assert "--strategy full" in text and "--model" in text and "--dropout 0" in text and "--weight-decay 0" in text


def test_good_fit_and_too_short():
    train = [1.5, 0.8, 0.5, 0.4, 0.35, 0.33, 0.32, 0.315, 0.312, 0.31]
    val = [1.5, 0.9, 0.6, 0.5, 0.46, 0.45, 0.445, 0.44, 0.44, 0.441]
    assert diagnose_fit(_history(train, val), num_classes=10, config=_config()).verdict == "good fit"
    assert diagnose_fit(_history(train[:2], val[:2]), num_classes=10).verdict == "too short to tell"


def test_label_smoothing_raises_the_floor_so_a_smoothed_loss_is_not_called_high():
    smoothing, classes = 0.3, 10
    high, low = 1 - smoothing + smoothing / classes, smoothing / classes
    floor = -(high * math.log(high) + (classes - 1) * low * math.log(low))
    train = [2.3, 1.6, 1.35, 1.3, 1.28, 1.27, 1.27, 1.268, 1.267, floor + 0.2]  # near the smoothed floor
    val = [2.3, 1.7, 1.45, 1.4, 1.39, 1.38, 1.38, 1.379, 1.378, 1.378]
    plain = diagnose_fit(_history(train, val), num_classes=classes, config=_config())
    smoothed = diagnose_fit(_history(train, val), num_classes=classes, config=_config(label_smoothing=smoothing))
    assert plain.verdict == "underfitting" and smoothed.verdict == "good fit"
    assert any("floor" in note for note in smoothed.notes)


@pytest.mark.slow  # ~40 s: a real run trained far past its best epoch
def test_a_real_over_trained_run_is_called_overfitting(cifar_mini, tmp_path):
    from honed.training.fit import train
    from tests.cli.test_cli import honed

    data = tmp_path / "few"
    for folder in sorted((cifar_mini / "train").iterdir())[:4]:  # 4 classes x 16 images: easy to memorize
        for image in sorted(folder.iterdir())[:16]:
            (data / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, data / folder.name / image.name)
    config = RunConfig(name="memorize", workspace=str(tmp_path / "ws"),
                       data=DataConfig(source=str(data), val_fraction=0.25),
                       model=ModelConfig(name="test_resnet"),
                       train=TrainConfig(epochs=14, batch_size=8, lr=3e-3, workers=0, schedule="constant"))
    config.preprocess.image_size = 32
    run = train(config).run_dir
    report = run_fit_report(run)
    assert report.verdict == "overfitting", (report.evidence, pd.read_csv(run / "metrics.csv"))
    assert (run / "fit_report.json").is_file()
    shown = honed("fit-report", "memorize", "--workspace", tmp_path / "ws")
    assert shown.returncode == 0, shown.stderr
    assert "overfitting" in shown.stdout and "--weight-decay" in shown.stdout
