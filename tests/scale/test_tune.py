"""Hyperparameter search: trials are honed runs in the ledger; workers share one study through its storage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from honed.search import SearchSpace, tune
from honed.tracking.ledger import Ledger
from tests.training.test_train import tiny_config

TINY_SPACE = SearchSpace(lr=(1e-3, 3e-2), epochs=(1, 2), batch_size=(4, 8), drop_rate=(0.0, 0.3))


@pytest.fixture(autouse=True)
def _quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def test_three_trials_are_three_runs_in_the_ledger_and_the_best_is_found(color_folder, tmp_path):
    base = tiny_config(color_folder, tmp_path / "ws")
    base.name, base.parent = "search", "baseline"
    result = tune(base, trials=3, timeout_s=None, space=TINY_SPACE)
    assert result.study_name == "search" and result.storage.endswith("ws/optuna.sqlite3")
    assert list(result.trials["run"]) == ["search-t0", "search-t1", "search-t2"]
    with Ledger(tmp_path / "ws") as ledger:
        records = {r.name: r for r in ledger.runs()}
    assert set(records) == {"search-t0", "search-t1", "search-t2"}
    for row in result.trials.itertuples():
        record = records[row.run]
        assert record.parent == "baseline" and record.change.startswith("tune: lr=")
        assert f"epochs={row.param_epochs}" in record.change and f"batch_size={row.param_batch_size}" in record.change
        config = (tmp_path / "ws" / row.run / "config.yaml").read_text()  # the drawn values were trained with
        assert f"epochs: {row.param_epochs}" in config and f"batch_size: {row.param_batch_size}" in config
        if row.state == "complete":
            assert record.status == "done" and record.score == pytest.approx(row.value)
    complete = result.trials[result.trials["state"] == "complete"]
    best = complete.loc[complete["value"].idxmax()]  # accuracy: greater is better
    assert result.best_run == best["run"] and result.best_score == pytest.approx(best["value"])
    assert result.best_params["lr"] == pytest.approx(best["param_lr"])

    again = tune(base, trials=4, timeout_s=None, space=TINY_SPACE)  # the same study resumes: one more trial
    assert list(again.trials["run"]) == ["search-t0", "search-t1", "search-t2", "search-t3"]
    assert again.trials.iloc[:3]["value"].tolist() == result.trials["value"].tolist()


def test_a_minimized_metric_is_minimized(color_folder, tmp_path):
    base = tiny_config(color_folder, tmp_path / "ws", metric="log_loss")
    base.name = "ll"
    result = tune(base, trials=2, timeout_s=None, space=SearchSpace(lr=(1e-3, 3e-2), epochs=(1, 1),
                                                                    batch_size=(8,), drop_rate=None))
    complete = result.trials[result.trials["state"] == "complete"]
    assert result.best_score == pytest.approx(complete["value"].min())


def test_a_pruned_trial_stops_early_and_says_so_in_the_ledger(color_folder, tmp_path):
    class PruneFromEpochTwo(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number > 0 and trial.last_step is not None and trial.last_step >= 2

    base = tiny_config(color_folder, tmp_path / "ws")
    base.name = "p"
    result = tune(base, trials=2, timeout_s=None, pruner=PruneFromEpochTwo(),
                  space=SearchSpace(lr=(1e-3, 3e-2), epochs=(3, 3), batch_size=(8,), drop_rate=None))
    assert result.trials["state"].tolist() == ["complete", "pruned"] and result.best_run == "p-t0"
    history = pd.read_csv(tmp_path / "ws" / "p-t1" / "metrics.csv")
    assert len(history) == 2  # stopped after epoch 2 of 3
    with Ledger(tmp_path / "ws") as ledger:
        record = ledger.get("p-t1")
    assert record.status == "interrupted" and "pruned by the tuner after epoch 2" in record.change


def test_two_workers_on_one_sqlite_study_share_the_trials(color_folder, tmp_path):
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "honed", "tune", str(color_folder), "--model", "test_resnet",
               "--image-size", "16", "--workers", "0", "--device", "cpu", "--name", "w", "--workspace", str(ws),
               "--trials", "4", "--lr-min", "1e-3", "--lr-max", "3e-2", "--epochs-min", "1", "--epochs-max", "2",
               "--batch-sizes", "4,8", "--val-fraction", "0.25", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{ws / 'optuna.sqlite3'}")
    trained = [t for t in study.trials if not t.user_attrs.get("surplus")]
    runs = [t.user_attrs["run"] for t in trained]
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 4  # no duplicate names, the total reached
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trained)  # no trial lost or left running
    with Ledger(ws) as ledger:
        names = {r.name for r in ledger.runs()}
    assert names == set(runs)  # every trial is a run in the ledger, and every run a trial
    for name in runs:
        assert (Path(ws) / name / "config.yaml").is_file()
