"""--log mlflow on a workflow: every ledger row an MLflow run, nested by ``mlflow.parentRunId`` as the step tree
is, with artifacts (curves, the bundle of the export step); --log tensorboard: the HPARAMS tab."""

from __future__ import annotations

import pytest

from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.tracking.ledger import Ledger
from honed.tracking.loggers import MLFLOW_DB, TENSORBOARD_DIR
from honed.tracking.mlflow_mirror import PARENT_TAG, mirror_ledger
from honed.workflow import WorkflowSpec, run_workflow


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    """Every artifact file of a run, by its path in the run's artifact root."""
    found = set()
    for item in client.list_artifacts(run_id, path or None):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.mark.slow  # a small workflow and MLflow creating its SQLite store (~40 s on a loaded 2-core machine)
def test_a_workflow_with_log_mlflow_is_a_tree_of_mlflow_runs(color_folder, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = tmp_path / "ws"
    base = RunConfig(name="", workspace=str(workspace), data=DataConfig(source=str(color_folder)),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(epochs=2, batch_size=8, workers=0, seed=0, log=["mlflow", "tensorboard"]))
    spec = WorkflowSpec(name="wf", base=base, budget_s=600, strategy="full", lr=3e-3, improve_rounds=0,
                        tune_trials=0, tta="flip", ensemble_size=0, refit=False)
    result = run_workflow(spec)

    client = MlflowClient(tracking_uri=f"sqlite:///{(workspace / MLFLOW_DB).resolve()}")
    experiment = client.get_experiment_by_name(workspace.name)
    runs = {r.data.tags["honed.run"]: r for r in client.search_runs([experiment.experiment_id])}
    with Ledger(workspace) as ledger:
        records = {r.name: r for r in ledger.runs()}
    assert set(runs) == set(records)  # every ledger row, once: the baseline's live run was completed, not doubled
    root = runs["wf"]
    assert root.info.status == "FINISHED" and PARENT_TAG not in root.data.tags
    for name, record in records.items():  # nested as the ledger's tree
        if record.parent:
            assert runs[name].data.tags[PARENT_TAG] == runs[record.parent].info.run_id, name
    baseline, tta, export = runs["wf-baseline"], runs["wf-tta"], runs["wf-export"]
    assert baseline.data.tags[PARENT_TAG] == root.info.run_id
    assert [m.step for m in client.get_metric_history(baseline.info.run_id, "val_loss")] == [1, 2]
    assert baseline.data.params["model.name"] == "test_resnet"
    assert baseline.data.metrics["final/score"] == pytest.approx(records["wf-baseline"].score)
    assert {"curves.png", "config.yaml"} <= _artifacts(client, baseline.info.run_id)
    assert tta.data.tags["honed.kind"] == "tta" and tta.data.metrics["score"] == pytest.approx(records["wf-tta"].score)
    bundle = _artifacts(client, export.info.run_id)
    assert {"bundle/model.safetensors", "bundle/model_card.md"} <= bundle, bundle
    assert runs["wf"].data.tags["honed.status"] == "done"
    assert mirror_ledger(workspace) == {name: run.info.run_id for name, run in runs.items()}  # idempotent

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(workspace / "wf-baseline" / TENSORBOARD_DIR))
    events.Reload()
    hparams = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.name"].string_value == "test_resnet"
    assert start.hparams["train.epochs"].number_value == 2
    assert "hparam/accuracy" in events.Tags()["scalars"]
