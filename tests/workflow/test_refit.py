"""The workflow's last use of the labels: the chosen run refitted on train + val for its chosen epochs, exported
and marked as such with the validation score kept beside it; ``--no-refit`` exports the chosen run itself."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

import honed
from honed.tracking.ledger import Ledger
from honed.workflow import run_workflow
from tests.workflow.test_workflow import tiny_spec

QUICK = dict(strategy="full", lr=3e-3, improve_rounds=0, tune_trials=0, ensemble_size=0, tta="", refit=True)


def test_the_export_is_a_refit_on_train_and_val_for_the_chosen_epochs(cifar_mini, tmp_path, one_thread):
    workspace = tmp_path / "ws"
    result = run_workflow(tiny_spec(cifar_mini, workspace, **QUICK))
    best = result.best
    assert best == "wf-baseline"
    chosen = pd.read_csv(workspace / best / "metrics.csv")
    top = chosen[chosen["accuracy"] == chosen["accuracy"].max()]  # ties go to the lower validation loss
    epochs = int(top.loc[top["val_loss"].idxmin(), "epoch"])

    refit_dir = workspace / "wf-refit"
    manifest = pd.read_parquet(refit_dir / "manifest.parquet")
    original = pd.read_parquet(workspace / best / "manifest.parquet")
    assert "val" not in set(manifest["split"])  # the validation images moved into train
    assert (manifest["split"] == "train").sum() == original["split"].isin(["train", "val"]).sum()
    assert len(pd.read_csv(refit_dir / "metrics.csv")) == epochs
    facts = json.loads((refit_dir / "refit.json").read_text())
    assert facts["refit_of"] == best and facts["epochs"] == epochs
    assert facts["validation_score"] == result.best_score and facts["test"] is not None

    with Ledger(workspace) as ledger:
        row, export = ledger.get("wf-refit"), ledger.get("wf-export")
    assert row.kind == "refit" and row.parent == best and row.score is None and "refit on train+val" in row.change
    assert row.metrics["validation_accuracy"] == result.best_score
    assert export.parent == "wf-refit" and export.score == result.best_score
    step = result.state.step("refit")
    assert step.status == "done" and not step.kept and result.best == best  # the best stays the validated run

    meta = json.loads((result.bundle / "bundle.json").read_text())
    assert meta["name"] == "wf-refit" and meta["refit"]["validation_score"] == result.best_score
    card = (result.bundle / "model_card.md").read_text()
    assert "Refit on train + validation" in card and f"{result.best_score:.4f}" in card
    assert len(honed.load(result.bundle).predict([str(next(cifar_mini.rglob("*.jpg")))])) == 1


def test_no_refit_exports_the_validation_selected_run(cifar_mini, tmp_path, one_thread):
    from honed.cli import _register, app

    _register()
    args = ["workflow", str(cifar_mini), "--workspace", str(tmp_path / "ws"), "--model", "test_resnet",
            "--no-pretrained", "--image-size", "16", "--epochs", "1", "--batch-size", "32", "--workers", "0",
            "--strategy", "full", "--lr", "0.003", "--improve-rounds", "0", "--tune-trials", "0", "--tta", "",
            "--ensemble-size", "0", "--budget", "5m", "--no-refit", "--json"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    steps = {s["key"]: s for s in result["steps"]}
    assert steps["refit"]["status"] == "skipped" and "--no-refit" in steps["refit"]["change"]
    meta = json.loads((tmp_path / "ws" / "workflow" / "bundle" / "bundle.json").read_text())
    assert meta["name"] == "workflow-baseline" and meta["refit"] is None
    assert not (tmp_path / "ws" / "workflow-refit").exists()
