"""Ensembles of real runs: a first-class run in the workspace, predicting from disk with each member's own
preprocessing (16 px ResNet + 24 px EfficientNet), exported as one bundle that refuses tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import honed
from honed.ensemble import create_ensemble
from honed.combine.rules import TIE_RULE
from honed.predict.ensemble_predictor import EnsemblePredictor
from honed.predict.voting import VotingEnsemble
from honed.errors import HonedError
from honed.export.bundle import export_bundle
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.tracking.ledger import Ledger
from tests.cli.test_cli import honed as honed_cli


def _images(trained) -> list[str]:
    return sorted(str(p) for p in trained.data.rglob("*.png"))


def test_ensemble_is_a_run_with_its_definition_predictions_and_report(trained):
    result = create_ensemble(["tiny", "other"], name="soft-pair", workspace=trained.workspace)
    folder = result.run_dir
    for name in ("ensemble.json", "config.yaml", "labels.json", "manifest.parquet", "predictions_val.parquet",
                 "diversity.json", "diversity.md", "diversity.png"):
        assert (folder / name).is_file(), name
    with Ledger(trained.workspace) as ledger:
        record = ledger.get("soft-pair")
    assert record.kind == "ensemble" and record.parent == "tiny" and record.status == "done"
    assert record.change == "soft vote of 2 runs: tiny, other"
    assert {"member:tiny:accuracy", "member:other:accuracy"} <= set(record.metrics)
    assert record.score == pytest.approx(result.score) and result.score >= 0.9

    definition = json.loads((folder / "ensemble.json").read_text())
    assert [m["name"] for m in definition["members"]] == ["tiny", "other"]
    assert definition["members"][0]["path"] == "tiny"  # relative to the workspace: the workspace can move
    assert definition["rule"] == {"method": "soft", "weights": None} and definition["tie_rule"] == TIE_RULE

    members = [pd.read_parquet(trained.small / "predictions_val.parquet"),
               pd.read_parquet(trained.other / "predictions_val.parquet")]
    saved = pd.read_parquet(folder / "predictions_val.parquet")
    columns = ["p:blue", "p:red"]
    np.testing.assert_allclose(saved[columns].to_numpy(), (members[0][columns].to_numpy()
                                                           + members[1][columns].to_numpy()) / 2, atol=1e-6)
    report = json.loads((folder / "diversity.json").read_text())
    assert report["members"] == ["tiny", "other"] and report["ensemble_score"] == pytest.approx(result.score)


def test_members_with_their_own_preprocessing_predict_from_disk(trained):
    create_ensemble(["tiny", "other"], name="from-disk", workspace=trained.workspace)
    ensemble = honed.load(trained.workspace / "from-disk")
    assert isinstance(ensemble, EnsemblePredictor)
    assert [m.image_size for m in ensemble.members] == [16, 24]
    assert [m.config.model.name for m in ensemble.members] == ["test_resnet", "test_efficientnet"]
    paths = _images(trained)
    own = [honed.load(run).predict_proba(paths, workers=0) for run in (trained.small, trained.other)]
    probs = ensemble.predict_proba(paths, workers=0)
    np.testing.assert_allclose(probs, (own[0] + own[1]) / 2, atol=1e-6)
    table = ensemble.predict(paths, top_k=2, workers=0)
    truth = [Path(p).parent.name for p in paths]
    assert (table["prediction"] == truth).mean() >= 0.9
    saved = pd.read_parquet(trained.workspace / "from-disk" / "predictions_val.parquet")
    np.testing.assert_allclose(ensemble.predict_proba(saved["path"].tolist(), workers=0),
                               saved[["p:blue", "p:red"]].to_numpy(), atol=1e-5)


def test_weighted_voting_is_cross_fitted_and_hard_voting_records_its_tie_rule(trained):
    weighted = create_ensemble(["tiny", "other"], name="weighted-pair", method="weighted", folds=3,
                               workspace=trained.workspace)
    weights = weighted.rule.weights
    assert len(weights) == 2 and sum(weights) == pytest.approx(1)
    assert weighted.details["cross_fit"]["folds"] == 3 and len(weighted.details["cross_fit"]["fold_weights"]) == 3
    hard = create_ensemble(["tiny", "other"], name="hard-pair", method="hard", workspace=trained.workspace)
    assert hard.rule.method == "hard" and hard.diversity.majority_error == pytest.approx(1 - hard.score)
    with pytest.raises(HonedError, match="'mean' is for regress, not classify"):
        create_ensemble(["tiny", "other"], name="x", method="mean", workspace=trained.workspace)


def test_members_must_share_the_validation_split(trained, tmp_path):
    from honed.training.fit import train
    from tests.training.test_train import tiny_config

    config = tiny_config(trained.data, trained.workspace, epochs=1, seed=5)  # another seed: another holdout
    config.name = "other-split"
    train(config)
    with pytest.raises(HonedError, match="different validation images.*same data and split"):
        create_ensemble(["tiny", "other-split"], name="mixed", workspace=trained.workspace)
    with pytest.raises(HonedError, match="at least 2 members"):
        create_ensemble(["tiny"], workspace=trained.workspace)
    with pytest.raises(HonedError, match="already exists"):
        create_ensemble(["tiny", "other"], name="tiny", workspace=trained.workspace)


def test_ensemble_bundle_round_trip_and_refusals(trained, tmp_path):
    create_ensemble(["tiny", "other"], name="to-ship", method="weighted", workspace=trained.workspace)
    report = export_bundle(trained.workspace / "to-ship", tmp_path / "ship", archive=True)
    assert report.passed and report.path.suffix == ".zip"
    assert {"bundle.json", "model_card.md", "members/00/bundle.json", "members/01/model.safetensors"} <= set(
        report.files)
    paths = _images(trained)
    from_run = honed.load(trained.workspace / "to-ship").predict_proba(paths, workers=0)
    from_zip = honed.load(report.path)
    assert isinstance(from_zip, EnsemblePredictor) and from_zip.rule.method == "weighted"
    np.testing.assert_allclose(from_zip.predict_proba(paths, workers=0), from_run, atol=1e-6)

    folder = export_bundle(trained.workspace / "to-ship", tmp_path / "folder").path
    meta = json.loads((folder / BUNDLE_FILE).read_text())
    assert meta["kind"] == "ensemble" and [m["folder"] for m in meta["members"]] == ["members/00", "members/01"]
    member_meta = json.loads((folder / "members/01/bundle.json").read_text())
    assert member_meta["preprocessing"]["image_size"] == 24

    swapped = Path(shutil.copytree(folder, tmp_path / "swapped"))
    member_meta["preprocessing"]["image_size"] = 32
    (swapped / "members/01/bundle.json").write_text(json.dumps(member_meta))
    with pytest.raises(HonedError, match="does not match the SHA-256.*changed or swapped"):
        honed.load(swapped)
    for tamper, message in [(lambda m: m["rule"].update(method="median"), "unknown ensemble method"),
                            (lambda m: m["members"][0].update(folder="../elsewhere"), "members/NN"),
                            (lambda m: m["rule"].update(weights=[1.0]), "2 numbers")]:
        bad = Path(shutil.copytree(folder, tmp_path / f"bad-{message[:6]}"))
        broken = json.loads((bad / BUNDLE_FILE).read_text())
        tamper(broken)
        (bad / BUNDLE_FILE).write_text(json.dumps(broken))
        with pytest.raises(HonedError, match=message):
            honed.load(bad)


def test_voting_ensemble_has_the_scikit_learn_interface(trained):
    from sklearn.base import clone

    members = [honed.load(trained.small), honed.load(trained.other)]
    val = pd.read_parquet(trained.small / "predictions_val.parquet")
    with pytest.raises(HonedError, match="call fit"):
        VotingEnsemble(members, method="weighted").predict(val["path"])
    ensemble = VotingEnsemble(members, method="weighted", folds=3).fit(val["path"], val["target"])
    assert sum(ensemble.rule_.weights) == pytest.approx(1) and "accuracy" in ensemble.cv_score_
    assert ensemble.score(val["path"], val["target"]) >= 0.9
    assert list(ensemble.predict(val["path"][:2])) == list(val["target"][:2])
    assert clone(ensemble).get_params()["method"] == "weighted" and not hasattr(clone(ensemble), "rule_")
    np.testing.assert_allclose(ensemble.to_predictor().predict_proba(val["path"].tolist(), workers=0),
                               ensemble.predict_proba(val["path"]), atol=1e-6)


def cli_app():
    """The ensemble commands (and predict) as the CLI registers them, run in-process: no interpreter start-up."""
    import typer

    from honed.cli import ensemble_cmd, predict_cmd

    app = typer.Typer()
    for name in ("evaluate", "ensemble", "bag", "boost"):
        app.command(name)(getattr(ensemble_cmd, name))
    app.command("predict")(predict_cmd.predict)
    return app


def test_command_line_ensemble_then_predict(trained, tmp_path):
    from typer.testing import CliRunner

    runner, app = CliRunner(), cli_app()
    made = runner.invoke(app, ["ensemble", "tiny", "other", "--name", "cli-hard", "--method", "hard",
                               "--workspace", str(trained.workspace)])
    assert made.exit_code == 0, made.output
    assert "majority-vote error" in made.output and "if the members erred" in made.output
    out = tmp_path / "preds.csv"
    predicted = runner.invoke(app, ["predict", "cli-hard", str(trained.data / "red"), "--out", str(out),
                                    "--workspace", str(trained.workspace), "-q"])
    assert predicted.exit_code == 0, predicted.output
    assert (pd.read_csv(out)["prediction"] == "red").mean() >= 0.9
    failed = runner.invoke(app, ["ensemble", "tiny", "--workspace", str(trained.workspace)])
    assert isinstance(failed.exception, HonedError) and "at least 2 members" in str(failed.exception)


@pytest.mark.slow
def test_command_line_errors_are_one_line_with_exit_code_2(trained):
    failed = honed_cli("ensemble", "tiny", "--workspace", trained.workspace)
    assert failed.returncode == 2 and "at least 2 members" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
