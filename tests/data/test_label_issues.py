"""Label issues: images planted under the wrong class of a tiny colour dataset are found, from frozen features
(Python and ``honed data check --label-issues``) and from a k-fold run's own predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from honed.analyze.label_issues import find_label_issues
from honed.data.label_issues import read_exclusion
from honed.data.sources import load_source
from honed.errors import HonedError
from tests.conftest import write_image

FLIPPED = ("red/flip0.png", "red/flip1.png", "blue/flip2.png")


@pytest.fixture
def noisy_folder(tmp_path) -> Path:
    """Two colours, 20 images each, and three images filed under the other colour's class."""
    root = tmp_path / "colors"
    for i in range(20):
        write_image(root / "red" / f"r{i}.png", (200, 40, 40), noise_seed=i)
        write_image(root / "blue" / f"b{i}.png", (40, 40, 200), noise_seed=100 + i)
    write_image(root / "red" / "flip0.png", (40, 40, 200), noise_seed=200)
    write_image(root / "red" / "flip1.png", (40, 40, 200), noise_seed=201)
    write_image(root / "blue" / "flip2.png", (200, 40, 40), noise_seed=202)
    return root


def _planted(root: Path) -> set[str]:
    return {str(root / name) for name in FLIPPED}


def test_flipped_labels_are_found_from_frozen_features(noisy_folder):
    import honed

    issues = honed.find_label_issues(noisy_folder, model="test_resnet", pretrained=False, image_size=16)
    assert set(issues.paths()) == _planted(noisy_folder)  # all three, nothing else
    assert [r["rank"] for r in issues.rows] == [1, 2, 3]
    assert issues.rows == sorted(issues.rows, key=lambda r: r["score"])  # most doubtful first
    for row in issues.rows:
        assert row["given"] != row["suggested"]
        assert row["suggested"] == ("blue" if "/red/" in row["path"] else "red")
    assert issues.images == 43 and "features: test_resnet" in issues.source


def test_cli_writes_the_csv_and_the_json(noisy_folder, tmp_path):
    from tests.reliability.cli_app import cli_app

    csv, out, page = tmp_path / "issues.csv", tmp_path / "check.json", tmp_path / "check.html"
    result = CliRunner().invoke(cli_app(), ["data", "check", str(noisy_folder), "--label-issues", "--image-size",
                                            "32", "--csv", str(csv), "--json", str(out), "--html", str(page)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Label issues" in result.output
    table = pd.read_csv(csv)
    assert list(table.columns) == ["path", "given", "suggested", "score", "rank"]
    assert set(table["path"].head(3)) == _planted(noisy_folder)  # the planted ones rank first
    rows = json.loads(out.read_text())["label_issues"]
    assert [r["path"] for r in rows] == table["path"].tolist()  # ranked, most likely first
    assert set(rows[0]) == {"path", "given", "suggested", "score"}
    html = page.read_text()
    assert html.count("data:image/png;base64") >= 3 and "suggested <b>blue</b>" in html
    assert read_exclusion(str(csv)) == table["path"].tolist()


def test_flipped_labels_are_found_from_a_k_fold_run(noisy_folder, tmp_path, monkeypatch):
    from honed.training.crossval import cross_validate
    from tests.training.test_train import tiny_config

    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))
    config = tiny_config(noisy_folder, tmp_path / "ws", epochs=1)
    config.name, config.data.folds, config.model.strategy = "cv", 3, "probe"
    cross_validate(config)
    issues = find_label_issues(load_source(str(noisy_folder)), folds_run="cv", workspace=tmp_path / "ws")
    assert issues.images == 43 and issues.source.startswith("folds: 3")
    assert set(issues.paths()) == _planted(noisy_folder)
    from tests.reliability.cli_app import cli_app

    csv = tmp_path / "from-folds.csv"
    result = CliRunner().invoke(cli_app(), ["data", "check", str(noisy_folder), "--cheap", "--label-issues",
                                            "--folds", "cv", "--workspace", str(tmp_path / "ws"), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(csv)["path"]) == _planted(noisy_folder)


def test_missing_folds_and_regression_are_user_errors(noisy_folder, tmp_path):
    manifest = load_source(str(noisy_folder))
    with pytest.raises(HonedError, match="--folds"):
        find_label_issues(manifest, folds_run="nothing", workspace=tmp_path)
    with pytest.raises(HonedError, match="exclude"):
        read_exclusion(str(tmp_path / "absent.csv"))


def test_the_workflow_counts_them_and_trains_on_everything(noisy_folder, tmp_path):
    from honed.workflow import run_workflow
    from tests.workflow.test_workflow import tiny_spec

    spec = tiny_spec(noisy_folder, tmp_path / "ws", strategy="probe", tune_trials=0, improve_rounds=0, tta="",
                     ensemble_size=0)
    result = run_workflow(spec)
    setup = result.state.step("setup")
    found = setup.details["label_issues"]
    assert found["found"] >= 3 and "label issues found" in setup.change
    listed = pd.read_csv(found["csv"])["path"].tolist()
    assert _planted(noisy_folder) <= set(listed)
    trained = pd.read_parquet(tmp_path / "ws" / "wf-baseline" / "manifest.parquet")
    assert _planted(noisy_folder) <= set(trained["path"])  # counted, never dropped by itself


def test_train_without_the_top_label_issues_records_the_change(noisy_folder, tmp_path):
    from honed.tracking.ledger import Ledger
    from tests.reliability.cli_app import cli_app

    ws = tmp_path / "ws"
    result = CliRunner().invoke(cli_app(), ["train", str(noisy_folder), "--model", "tf_efficientnet_lite0",
                                            "--pretrained", "--strategy", "probe", "--image-size", "32",
                                            "--workers", "0", "--workspace", str(ws), "--name", "clean",
                                            "--exclude-label-issues", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    with Ledger(ws) as ledger:
        record = {r.name: r for r in ledger.runs()}["clean"]
    assert "without the 3 likeliest label issues" in record.change
    trained = pd.read_parquet(ws / "clean" / "manifest.parquet")
    assert not _planted(noisy_folder) & set(trained["path"]) and len(trained) == 40
    listed = ws / "label-issues" / "clean-top3.csv"
    assert set(pd.read_csv(listed)["path"]) == _planted(noisy_folder)
    from honed.export.bundle import export_bundle

    export_bundle(ws / "clean", tmp_path / "bundle")
    card = (tmp_path / "bundle" / "model_card.md").read_text()
    assert "## Data quality" in card and "trained without 3 training images listed as likely label errors" in card


def test_analyze_marks_the_mistakes_whose_label_is_doubtful():
    """Validation predictions where three confident 'mistakes' are images labelled against the evidence."""
    import numpy as np

    from honed.analyze.mistakes import error_report

    rng = np.random.default_rng(0)
    classes = ["cat", "dog"]
    targets = np.repeat([0, 1], 15)
    right = rng.uniform(0.7, 0.95, 30)
    probs = np.where(np.eye(2)[targets] == 1, right[:, None], 1 - right[:, None])
    probs[[0, 1, 20]] = np.eye(2)[1 - targets[[0, 1, 20]]] * 0.9 + 0.05  # labelled one way, clearly the other
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(30)], "target": np.array(classes)[targets],
                          "prediction": np.array(classes)[probs.argmax(1)], "confidence": probs.max(1),
                          "loss": -np.log(probs[np.arange(30), targets]), "p:cat": probs[:, 0], "p:dog": probs[:, 1]})
    report = error_report(frame, task="classify", classes=classes, target_columns=[], k=5)
    assert {r["path"] for r in report["label_issues"]} == {"0.png", "1.png", "20.png"}
    assert [w["doubtful_label"] for w in report["worst"]][:3] == [True, True, True]
    assert not any(w["doubtful_label"] for w in report["worst"][3:])


def test_workflow_cli_trains_without_them_only_when_asked(noisy_folder, tmp_path):
    from tests.reliability.cli_app import cli_app

    ws = tmp_path / "ws"
    result = CliRunner().invoke(cli_app(), ["workflow", str(noisy_folder), "--workspace", str(ws), "--name", "wf",
                                            "--strategy", "probe", "--image-size", "32", "--improve-rounds", "0",
                                            "--tune-trials", "0", "--tta", "", "--ensemble-size", "0",
                                            "--no-refit", "--workers", "0", "--exclude-label-issues", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    trained = pd.read_parquet(ws / "wf-baseline" / "manifest.parquet")
    assert not _planted(noisy_folder) & set(trained["path"]) and len(trained) == 40
    assert (ws / "label-issues" / "wf-top3.csv").is_file()
    from honed.tracking.ledger import Ledger

    with Ledger(ws) as ledger:
        setup = {r.name: r for r in ledger.runs()}["wf"]
    assert "training without the images listed in wf-top3.csv" in setup.change
