"""--log tensorboard / mlflow against the real libraries: what a run logs is read back with their own readers."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from honed.config import TrainConfig
from honed.errors import HonedError
from honed.tracking.loggers import MLFLOW_DB, MLFLOW_FILE, TENSORBOARD_DIR, create_loggers, flatten
from honed.training.fit import train
from tests.training.test_train import _StopAfter, tiny_config


def _config(color_folder, workspace, **train_kwargs):
    config = tiny_config(color_folder, workspace, log=["tensorboard", "mlflow"], **train_kwargs)
    config.parent, config.change = "base", "lr 1e-3 -> 3e-3"
    return config


def _scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    return events


def _mlflow(workspace):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{(workspace / MLFLOW_DB).resolve()}")


def test_tensorboard_and_mlflow_hold_what_metrics_csv_holds(color_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = tmp_path / "ws"
    result = train(_config(color_folder, workspace))
    history = pd.read_csv(result.run_dir / "metrics.csv")
    columns = [c for c in history.columns if c != "epoch"]
    assert {"train_loss", "val_loss", "accuracy", "lr"} <= set(columns)

    events = _scalars(result.run_dir)
    for column in columns:
        logged = events.Scalars(column)
        assert [e.step for e in logged] == history["epoch"].tolist(), column
        assert [e.value for e in logged] == pytest.approx(history[column].tolist(), rel=1e-5), column
    assert events.Scalars("final/accuracy")[-1].value == pytest.approx(result.metrics["accuracy"], rel=1e-6)

    client = _mlflow(workspace)
    experiment = client.get_experiment_by_name("ws")
    run_id = json.loads((result.run_dir / MLFLOW_FILE).read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment.experiment_id and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.003" and run.data.params["model.name"] == "test_resnet"
    assert run.data.params["train.log"] == "['tensorboard', 'mlflow']"
    assert run.data.tags["honed.run"] == "tiny" and run.data.tags["honed.parent"] == "base"
    assert run.data.tags["honed.change"] == "lr 1e-3 -> 3e-3" and run.info.run_name == "tiny"
    for column in columns:
        logged = sorted(client.get_metric_history(run_id, column), key=lambda m: m.step)
        assert [m.step for m in logged] == history["epoch"].tolist(), column
        assert [m.value for m in logged] == pytest.approx(history[column].tolist(), rel=1e-9), column
    assert run.data.metrics["final/accuracy"] == pytest.approx(result.metrics["accuracy"])


def test_interrupted_run_is_killed_then_resumed_into_the_same_mlflow_run(color_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = tmp_path / "ws"
    with pytest.raises(KeyboardInterrupt):
        train(_config(color_folder, workspace), reporter=_StopAfter(1))
    run_dir = workspace / "tiny"
    run_id = json.loads((run_dir / MLFLOW_FILE).read_text())["run_id"]
    client = _mlflow(workspace)
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "accuracy")] == [1]

    resumed = train(_config(color_folder, workspace), resume=True)
    assert json.loads((run_dir / MLFLOW_FILE).read_text())["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "accuracy")) == [1, 2, 3]
    assert len(client.search_runs([client.get_experiment_by_name("ws").experiment_id])) == 1
    assert sorted({e.step for e in _scalars(resumed.run_dir).Scalars("accuracy")}) == [1, 2, 3]


def test_mlflow_tracking_uri_is_respected(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from honed.config import RunConfig

    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_dir = tmp_path / "ws" / "r1"
    run_dir.mkdir(parents=True)
    loggers = create_loggers(["mlflow"])
    loggers.start(RunConfig(name="r1", workspace=str(tmp_path / "ws")), run_dir)
    loggers.log_epoch({"epoch": 1, "accuracy": 0.5, "note": "text is skipped"}, 1)
    loggers.finish({}, "failed")
    assert not (tmp_path / "ws" / MLFLOW_DB).exists()
    run = MlflowClient(tracking_uri=uri).get_run(json.loads((run_dir / MLFLOW_FILE).read_text())["run_id"])
    assert run.info.status == "FAILED" and run.data.metrics == {"accuracy": 0.5}


def test_log_names_are_validated_and_a_missing_package_names_the_extra(monkeypatch):
    with pytest.raises(HonedError, match="--log must be one of tensorboard, mlflow"):
        TrainConfig(log=["wandb"])
    assert TrainConfig(log=["mlflow", "mlflow"]).log == ["mlflow"]
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if mlflow were not installed
    with pytest.raises(HonedError, match=r"pip install honed\[log\]"):
        create_loggers(["mlflow"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(HonedError, match=r"pip install honed\[log\]"):
        create_loggers(["tensorboard"])


def test_flatten_names_params_by_section():
    assert flatten({"train": {"lr": 1e-3, "log": ["mlflow"]}, "name": "r"}) == {
        "train.lr": 1e-3, "train.log": ["mlflow"], "name": "r"}
