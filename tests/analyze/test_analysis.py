"""analyze_run and improve_run on tiny runs: regression, user errors, and what improve records."""

from __future__ import annotations

import pandas as pd
import pytest

from honed.analyze import analyze_run, improve_run, read_analysis
from honed.analyze.improve import child_config
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.errors import HonedError
from honed.training.fit import train


def tiny(source, workspace, **data) -> RunConfig:
    return RunConfig(name="base", workspace=str(workspace), data=DataConfig(source=str(source), val_fraction=0.25,
                                                                            **data),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(epochs=2, batch_size=8, lr=1e-2, workers=0, seed=0))


def test_regression_runs_are_analyzed_by_their_residuals(tmp_path):
    from tests.conftest import write_image

    rows = []
    for i in range(40):
        write_image(tmp_path / "img" / f"{i}.png", (i * 6, i * 6, i * 6), noise_seed=i)
        rows.append({"path": f"img/{i}.png", "brightness": i * 6 / 255})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    run = train(tiny(tmp_path / "m.csv", tmp_path / "ws", task="regress", target_columns=["brightness"])).run_dir
    analysis = analyze_run(run, workers=0, reference_images=16, probes=["brightness", "blur", "flip"])
    residuals = analysis.errors["residuals"]
    assert residuals[0]["abs_error"] >= residuals[-1]["abs_error"] and "target:brightness" in residuals[0]
    assert [f.name for f in analysis.factors] != [] and analysis.summary["chance_failure"] > 0
    assert (run / "analysis" / "worst.png").is_file() and not (run / "analysis" / "confusion.png").exists()
    assert read_analysis(run)["task"] == "regress"


def test_analysis_needs_a_finished_run(tmp_path, color_folder):
    with pytest.raises(HonedError, match="not a honed run"):
        analyze_run(tmp_path)
    run = train(tiny(color_folder, tmp_path / "ws")).run_dir
    (run / "predictions_val.parquet").unlink()
    with pytest.raises(HonedError, match="lacks predictions_val.parquet"):
        analyze_run(run)
    with pytest.raises(HonedError, match="unknown probe"):
        analyze_run(tmp_path / "ws" / "base", probes=["wobble"])


def test_improve_inherits_the_config_and_records_the_change(tmp_path, color_folder):
    parent = tiny(color_folder, tmp_path / "ws")
    parent.train.augment = "hflip"
    run = tmp_path / "ws" / "base"
    config, change = child_config(parent, run, augment="rotate:30,hflip@0.2", dropout=0.2, weight_decay=None,
                                  epochs=4, name="")
    assert change == "augment: hflip -> hflip@0.2,rotate:30; dropout 0 -> 0.2; epochs 2 -> 4"
    assert config.parent == "base" and config.name == "base-improved" and config.workspace == str(run.parent)
    assert config.train.augment == "hflip@0.2,rotate:30" and config.model.drop_rate == 0.2
    assert config.data == parent.data and config.train.lr == parent.train.lr
    with pytest.raises(HonedError, match="nothing to change"):
        child_config(parent, run, augment=None, dropout=0.0, weight_decay=None, epochs=None, name="")
    with pytest.raises(HonedError, match="--dropout"):
        child_config(parent, run, augment=None, dropout=1.5, weight_decay=None, epochs=None, name="")


def test_improve_without_a_weakness_asks_for_changes_by_hand(tmp_path, color_folder):
    from honed.tracking.atomic import write_json

    run = train(tiny(color_folder, tmp_path / "ws")).run_dir
    write_json(run / "analysis" / "analysis.json", {"recommended": {"policy": "", "regularization": {}}})
    with pytest.raises(HonedError, match="no significant weakness.*--augment"):
        improve_run(run)
    with pytest.raises(HonedError, match="not a honed run"):
        improve_run(tmp_path / "nowhere", augment="hflip")
