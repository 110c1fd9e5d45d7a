"""Bagging (bootstrap draws, out-of-bag score), AdaBoost (SAMME) with neural members, gradient boosting on
frozen features (a gbm probe run), and snapshot ensembles from one cyclic run: on real small data, checked against the
members' own predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import honed
from honed.ensemble import create_ensemble, hard_vote
from honed.ensemble.bagging import bag, bootstrap_counts
from honed.ensemble.boosting import boost, samme_alpha
from honed.errors import HonedError
from honed.tracking.ledger import Ledger
from honed.optim import lr_factor, schedule_cycles
from tests.ensemble.conftest import colour_folder
from tests.training.test_train import tiny_config


def test_bootstrap_draws_n_rows_with_replacement_reproducibly():
    counts = bootstrap_counts(50, 4, seed=1)
    assert counts.shape == (4, 50) and (counts.sum(axis=1) == 50).all()
    assert np.array_equal(counts, bootstrap_counts(50, 4, seed=1))
    assert 0.2 < (counts == 0).mean() < 0.55  # about (1 - 1/n)^n = 37% of rows are left out per member


def test_bagging_oob_rows_are_exactly_those_not_drawn(tmp_path):
    data = colour_folder(tmp_path / "colors")
    config = tiny_config(data, tmp_path / "ws", epochs=1)
    config.name = "bag"
    result = bag(config, members=3)
    folder = result.run_dir
    draws = pd.read_parquet(folder / "bootstrap.parquet")
    members = [f"bag-b{k}" for k in range(3)]
    assert result.members == members and len(draws) == 18  # the 18 training rows of 24 images (25% held out)
    for name in members:  # each member trained on exactly its draws, and validated on the shared rows
        train_rows = pd.read_parquet(folder.parent / name / "manifest.parquet").query("split == 'train'")
        drawn = train_rows["path"].value_counts().reindex(draws["path"], fill_value=0).to_numpy()
        np.testing.assert_array_equal(drawn, draws[f"count:{name}"].to_numpy())
    vals = [pd.read_parquet(folder.parent / n / "predictions_val.parquet")["path"].tolist() for n in members]
    assert vals[0] == vals[1] == vals[2]

    counts = draws[[f"count:{n}" for n in members]].to_numpy()
    left_out = (counts == 0).sum(axis=1)
    oob = pd.read_parquet(folder / "oob_predictions.parquet").set_index("path")
    assert set(oob.index) == set(draws["path"][left_out > 0])  # exactly the rows some member never drew
    np.testing.assert_array_equal(oob.loc[draws["path"][left_out > 0], "oob_members"], left_out[left_out > 0])
    predictors = [honed.load(folder.parent / n) for n in members]
    for row, path in enumerate(draws["path"]):
        if path not in oob.index:
            continue
        own = [p.predict_proba([path], workers=0)[0] for k, p in enumerate(predictors) if counts[row, k] == 0]
        np.testing.assert_allclose(oob.loc[path, ["p:blue", "p:red"]].to_numpy(float), np.mean(own, axis=0),
                                   atol=1e-5)
    accuracy = (oob["prediction"] == oob["target"]).mean()
    assert result.metrics["oob_accuracy"] == pytest.approx(accuracy)
    assert result.metrics["oob_coverage"] == pytest.approx((left_out > 0).mean())
    with Ledger(tmp_path / "ws") as ledger:
        record = ledger.get("bag")
    assert record.kind == "ensemble" and record.parent == "bag-b0" and "oob_accuracy" in record.metrics
    with pytest.raises(HonedError, match="plain vote"):
        bag(tiny_config(data, tmp_path / "ws"), members=2, method="weighted")


def test_samme_boosting_reweights_and_votes_by_alpha(tmp_path):
    data = colour_folder(tmp_path / "colors", flipped=1)  # a mislabelled image per class: no member is perfect
    config = tiny_config(data, tmp_path / "ws", epochs=4, lr=1e-2)
    config.name = "boost"
    result = boost(config, rounds=3)
    rounds = result.details["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    joined = [r for r in rounds if r["joined"]]
    assert len(joined) == len(result.members) >= 2 and all(0 < r["weighted_error"] < 0.5 for r in joined)
    for r, alpha in zip(joined, result.details["alphas"]):
        assert alpha == pytest.approx(1.0 if r["weighted_error"] == 0 else samme_alpha(r["weighted_error"], 2))
    assert samme_alpha(0.25, 3) == pytest.approx(math.log(3) + math.log(2))
    draws = pd.read_parquet(result.run_dir / "resample.parquet")
    assert all(draws[f"count:{r['member']}"].sum() == len(draws) for r in joined)
    vals = [pd.read_parquet(tmp_path / "ws" / r["member"] / "predictions_val.parquet") for r in joined]
    outputs = np.stack([v[["p:blue", "p:red"]].to_numpy(float) for v in vals])
    weights = np.asarray(result.details["alphas"]) / sum(result.details["alphas"])
    saved = pd.read_parquet(result.run_dir / "predictions_val.parquet")
    np.testing.assert_allclose(saved[["p:blue", "p:red"]].to_numpy(), hard_vote(outputs, weights), atol=1e-6)
    assert json.loads((result.run_dir / "ensemble.json").read_text())["rule"]["method"] == "samme"


def test_gradient_boosting_on_frozen_features_is_a_probe_run_that_predicts(tmp_path):
    import onnx
    from typer.testing import CliRunner

    from honed.config import RunConfig
    from honed.ensemble.store import ENSEMBLE_FILE
    from honed.models.heads.gbm import HEAD_FILE
    from tests.ensemble.test_ensemble_runs import cli_app

    data = colour_folder(tmp_path / "colors")
    ws = tmp_path / "ws"
    config = tiny_config(data, ws)
    config.name = "gbm"
    result = boost(config, rounds=20, method="gbm")
    assert result.kind == "gbm" and result.rule is None and result.run_dir == ws / "gbm"
    assert result.metrics["accuracy"] >= 0.8  # colour survives random conv features
    assert result.details["features"] > 0 and result.details["rounds"] == 20
    saved = RunConfig.from_yaml(result.run_dir / "config.yaml").model
    assert (saved.strategy, saved.head_model, saved.gbm_rounds) == ("probe", "gbm", 20)
    meta = {p.key: p.value for p in onnx.load(str(result.run_dir / HEAD_FILE)).metadata_props}
    assert meta["rounds"] == "20" and meta["min_samples_leaf"] == "1"  # 18 training rows: a leaf of 18 // 10
    assert not (result.run_dir / ENSEMBLE_FILE).exists()
    with Ledger(ws) as ledger:
        assert ledger.get("gbm").score == pytest.approx(result.score)

    val = pd.read_parquet(result.run_dir / "predictions_val.parquet")
    predicted = honed.load(result.run_dir).predict_proba(val["path"].tolist(), workers=0)
    np.testing.assert_allclose(predicted, val[["p:blue", "p:red"]].to_numpy(float), atol=1e-6)

    # the rounds reach the trees: one round on the same (cached) features predicts otherwise
    made = CliRunner().invoke(cli_app(), [
        "boost", str(data), "--method", "gbm", "--rounds", "1", "--name", "gbm1", "--model", "test_resnet",
        "--image-size", "16", "--val-fraction", "0.25", "--workers", "0", "--device", "cpu", "--workspace",
        str(ws), "-q"])
    assert made.exit_code == 0, made.output
    assert "gbm1: gradient boosting on frozen features (a gbm probe run)" in " ".join(made.output.split())
    one = pd.read_parquet(ws / "gbm1" / "predictions_val.parquet").set_index("path").loc[val["path"]]
    assert np.abs(one[["p:blue", "p:red"]].to_numpy(float) - predicted).max() > 1e-3
    np.testing.assert_allclose(honed.load(ws / "gbm1").predict_proba(val["path"].tolist(), workers=0),
                               one[["p:blue", "p:red"]].to_numpy(float), atol=1e-6)

    old = ws / "old-gbm"  # boost --method gbm before it saved a probe run: an ensemble folder of kind gbm
    old.mkdir()
    (old / ENSEMBLE_FILE).write_text(json.dumps({"format": "honed-ensemble", "format_version": 1, "kind": "gbm",
                                                 "members": [], "rule": None}))
    with pytest.raises(HonedError, match="older honed.*boost --method gbm"):
        honed.load(old)


def test_cyclic_schedule_restarts_and_saves_a_snapshot_per_cycle(tmp_path):
    factors = [lr_factor(s, 40, 0, "cyclic", cycles=2) for s in range(40)]
    assert factors[0] == pytest.approx(1) and factors[20] == pytest.approx(1)  # the restart
    assert factors[19] < 0.01 and factors[39] < 0.01  # each cycle ends near zero
    assert schedule_cycles(10, 0) == 5 and schedule_cycles(7, 0) == 1 and schedule_cycles(4, 2) == 2
    with pytest.raises(HonedError, match="--cycles must divide --epochs"):
        tiny_config("x", tmp_path, epochs=5, schedule="cyclic", cycles=2)

    data = colour_folder(tmp_path / "colors")
    config = tiny_config(data, tmp_path / "ws", epochs=4, schedule="cyclic", cycles=2)
    config.name = "cyclic"
    run = honed.train(config).run_dir
    assert {p.name for p in run.glob("snapshot-*")} == {
        "snapshot-1.safetensors", "snapshot-1.predictions_val.parquet",
        "snapshot-2.safetensors", "snapshot-2.predictions_val.parquet"}
    result = create_ensemble(snapshots="cyclic", name="snaps", workspace=tmp_path / "ws")
    assert result.members == ["cyclic@snapshot-1", "cyclic@snapshot-2"] and result.kind == "snapshot"
    with Ledger(tmp_path / "ws") as ledger:
        assert ledger.get("snaps").parent == "cyclic"
    paths = sorted(str(p) for p in Path(data).rglob("*.png"))
    snapshots = [honed.load(run, weights=f"snapshot-{c}.safetensors").predict_proba(paths, workers=0) for c in (1, 2)]
    np.testing.assert_allclose(honed.load(result.run_dir).predict_proba(paths, workers=0),
                               (snapshots[0] + snapshots[1]) / 2, atol=1e-6)
    with pytest.raises(HonedError, match="0 snapshot"):
        create_ensemble(snapshots=run.parent / "snaps", workspace=tmp_path / "ws")  # an ensemble has none
