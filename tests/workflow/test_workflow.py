"""``honed workflow`` end to end on the shipped demo data with a tiny model: every step in the ledger as a
child of the one before, a bundle that predicts, a report, and resuming after an interruption."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import honed
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.tracking.ledger import Ledger
from honed.workflow import WorkflowSpec, resume_workflow, run_workflow
from honed.workflow import steps


def tiny_spec(data, workspace, **overrides) -> WorkflowSpec:
    base = RunConfig(name="", workspace=str(workspace), data=DataConfig(source=str(data)),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(epochs=2, batch_size=32, workers=0, seed=0))
    settings = dict(name="wf", base=base, budget_s=600, improve_rounds=1, tune_trials=2, ensemble_size=3,
                    analysis_images=200, refit=False)  # the refit is tested where it is the point (test_refit.py)
    settings.update(overrides)
    return WorkflowSpec(**settings)


def test_workflow_records_every_step_and_exports_a_bundle_that_predicts(cifar_mini, tmp_path):
    workspace = tmp_path / "ws"
    result = run_workflow(tiny_spec(cifar_mini, workspace, strategy="auto", refit=True))

    keys = [s.key for s in result.state.steps]
    for key in ("setup", "baseline", "improve-1", "tune", "tta", "ensemble", "export"):
        assert key in keys, key
    assert "augmented-head" not in keys  # only after a probe: the improvement rounds augment the others
    with Ledger(workspace) as ledger:
        records = {r.name: r for r in ledger.runs()}
    assert records["wf"].kind == "workflow" and records["wf"].status == "done"
    assert records["wf-baseline"].parent == "wf"
    done = [s for s in result.state.steps if s.status == "done" and s.run]
    for step in done:  # every step wrote a ledger row whose parent is an earlier step's row
        assert step.run in records, step.key
        parent = records[step.run].parent
        assert parent is None or parent in records
    exported = records["wf-export"].parent  # the best run's refit on train+val, or the best itself (an ensemble)
    assert exported == result.best or (exported == "wf-refit" and records[exported].parent == result.best)
    candidates = [s for s in done if s.score is not None and s.key != "tta"  # an ensemble within noise of the
                  and not (s.key == "ensemble" and not s.kept)]  # best may score higher and still not be kept
    assert result.best_score == max(s.score for s in candidates)
    setup = result.state.step("setup")
    assert setup.details["strategy"] and "LR range test" in setup.details["lr"]
    tta = result.state.step("tta")  # TTA doubles the cost of a prediction: kept only beyond the noise
    if tta.status == "done":
        assert tta.details["pays"] == (tta.details["gain"] > max(tta.details["gain_se"], 0.0) and tta.delta > 0)
    ensemble = result.state.step("ensemble")  # so does an ensemble: it predicts once per member
    if ensemble.status == "done" and ensemble.kept:
        assert ensemble.details["gain"] > ensemble.details["gain_se"]
    assert (result.folder / "advice.json").exists()

    predictor = honed.load(result.bundle)
    val_paths = sorted((cifar_mini / "test").rglob("*.jpg"))[:6]
    predictions = predictor.predict([str(p) for p in val_paths])
    assert len(predictions) == 6 and set(predictions["prediction"]) <= set(predictor.classes)
    html = result.report.read_text()
    assert "wf-baseline" in html and "<img" in html


def test_an_interrupted_workflow_resumes_without_redoing_steps(cifar_mini, tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    spec = tiny_spec(cifar_mini, workspace, strategy="full", lr=3e-3, improve_rounds=0, tune_trials=0,
                     ensemble_size=0, tta="")

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "export", interrupted)
    monkeypatch.setattr("honed.workflow.run.STEPS", (steps.setup, steps.baseline, steps.improve, steps.tune,
                                                     steps.tta, steps.ensemble, interrupted))
    with pytest.raises(KeyboardInterrupt):
        run_workflow(spec)
    saved = json.loads((workspace / "wf" / "workflow.json").read_text())
    assert [s["key"] for s in saved["steps"] if s["status"] == "done"] == ["setup", "baseline"]
    baseline_weights = (workspace / "wf-baseline" / "best.safetensors").read_bytes()

    monkeypatch.undo()
    result = resume_workflow(workspace, "wf")
    assert result.state.finished and result.bundle is not None
    assert (workspace / "wf-baseline" / "best.safetensors").read_bytes() == baseline_weights  # not retrained
    assert result.state.seconds >= saved["seconds"]
    with pytest.raises(honed.HonedError, match="finished"):
        run_workflow(spec)  # a new workflow may not take a finished one's name
    again = resume_workflow(workspace, "wf")  # resuming a finished one trains nothing and gives its result
    assert again.state.finished and again.bundle == result.bundle and again.report == result.report
    assert (workspace / "wf-baseline" / "best.safetensors").read_bytes() == baseline_weights


def test_the_workflow_is_finished_only_once_its_report_is_written(cifar_mini, tmp_path, monkeypatch):
    """A kill while the report is written leaves the workflow unfinished: resuming writes the report."""
    workspace = tmp_path / "ws"
    spec = tiny_spec(cifar_mini, workspace, strategy="full", lr=3e-3, improve_rounds=0, tune_trials=0,
                     ensemble_size=0, tta="")
    real_report = steps.report

    def killed(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "report", killed)
    with pytest.raises(KeyboardInterrupt):
        run_workflow(spec)
    assert not json.loads((workspace / "wf" / "workflow.json").read_text()).get("finished")
    monkeypatch.setattr(steps, "report", real_report)
    result = resume_workflow(workspace, "wf")
    assert result.state.finished and result.report is not None and result.report.is_file()


def test_cli_workflow_json_and_bad_budget(cifar_mini, tmp_path):
    from honed.cli import _register, app

    _register()
    runner = CliRunner()
    bad = runner.invoke(app, ["workflow", str(cifar_mini), "--budget", "soon", "--workspace", str(tmp_path)])
    assert bad.exit_code != 0 and "budget" in str(bad.exception) + bad.output
    args = ["workflow", str(cifar_mini), "--workspace", str(tmp_path / "ws"), "--model", "test_resnet",
            "--no-pretrained", "--image-size", "16", "--epochs", "1", "--batch-size", "32", "--workers", "0",
            "--strategy", "full", "--lr", "0.003", "--improve-rounds", "0", "--tune-trials", "0", "--tta", "",
            "--ensemble-size", "0", "--budget", "5m", "--json"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["best"] == "workflow-baseline" and 0 <= result["best_score"] <= 1
    assert [s["key"] for s in result["steps"]][:2] == ["setup", "baseline"]
    assert np.isfinite(result["seconds"])


def test_runs_shows_the_step_tree_with_deltas(tmp_path):
    from honed.cli import _register, app
    from honed.tracking.ledger import RunRecord

    _register()
    with Ledger(tmp_path) as ledger:
        ledger.upsert(RunRecord(name="wf", kind="workflow", status="done", metric="accuracy"))
        ledger.upsert(RunRecord(name="wf-baseline", parent="wf", status="done", metric="accuracy", score=0.5))
        ledger.upsert(RunRecord(name="wf-improve-1", parent="wf-baseline", status="done", metric="accuracy",
                                score=0.625, change="augment: +hflip"))
    out = CliRunner().invoke(app, ["runs", "--workspace", str(tmp_path)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if "wf" in line]
    assert [line.split("│")[1].strip() for line in lines] == ["wf", "└ wf-baseline", "└ wf-improve-1"]
    assert "+0.1250" in lines[2] and "augment: +hflip" in lines[2]


def test_a_probe_workflow_skips_the_steps_that_cannot_change_it(color_folder, tmp_path):
    spec = tiny_spec(color_folder, tmp_path / "ws", strategy="probe", tune_trials=2, improve_rounds=2, tta="",
                     ensemble_size=0)
    result = run_workflow(spec)
    for key in ("improve-1", "tune"):
        step = result.state.step(key)
        assert step.status == "skipped" and "probe" in step.change
    assert result.best == "wf-baseline" and honed.load(result.bundle).predict([str(next(color_folder.rglob("*.png")))]) is not None


def test_a_workflow_that_failed_before_its_first_step_starts_again_with_the_corrected_command(color_folder,
                                                                                               tmp_path):
    workspace = tmp_path / "ws"
    with pytest.raises(honed.HonedError, match="not found"):
        run_workflow(tiny_spec(tmp_path / "nope", workspace))
    spec = tiny_spec(color_folder, workspace, strategy="full", lr=3e-3, improve_rounds=0, tune_trials=0, tta="",
                     ensemble_size=0)
    result = run_workflow(spec)  # same name: the empty attempt is taken over, with the new data
    assert result.state.finished and result.best == "wf-baseline"
    saved = json.loads((workspace / "wf" / "workflow-spec.json").read_text())
    assert saved["base"]["data"]["source"] == str(color_folder)


def test_a_workflow_on_a_small_budget_ends_within_it(cifar_mini, tmp_path):
    """Issue 17: a 60 s budget on the demo data (600 images) with the real default model, every step planned."""
    import time

    base = RunConfig(name="", workspace=str(tmp_path / "ws"), data=DataConfig(source=str(cifar_mini / "train")),
                     model=ModelConfig(name="tf_efficientnet_lite0"), preprocess=PreprocessConfig(),
                     train=TrainConfig(epochs=5, batch_size=64, workers=0, seed=0))
    started = time.perf_counter()
    result = run_workflow(WorkflowSpec(name="wf", base=base, budget_s=60))
    wall = time.perf_counter() - started
    plan = result.state.plan
    assert plan["budget_s"] == 60 and plan["steps"][0]["key"] == "lr-test"
    assert result.state.finished and result.bundle is not None
    overrun = result.state.overrun_s
    assert wall <= 60 * 1.1 + overrun, (wall, overrun, [(s.key, s.seconds, s.change) for s in result.state.steps])
    assert overrun <= 30  # bounded: the last step's overrun
    assert result.to_dict()["overrun_s"] == overrun
