"""--json: stdout is exactly one JSON document, for `honed train`, `honed runs` and `honed show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from honed.cli import runs_cmd, train_cmd
from honed.tracking.ledger import Ledger

TINY = ["--model", "test_resnet", "--image-size", "16", "--batch-size", "8", "--workers", "0"]


def cli_app() -> typer.Typer:
    """train, runs and show as the CLI registers them, run in-process."""
    app = typer.Typer()
    app.command("train")(train_cmd.train)
    app.command("runs")(runs_cmd.runs)
    app.command("show")(runs_cmd.show)
    return app


def test_train_runs_and_show_print_json(color_folder, tmp_path):
    ws = tmp_path / "ws"
    runner, app = CliRunner(), cli_app()
    done = runner.invoke(app, ["train", str(color_folder), "--epochs", "2", "--name", "base", "--workspace", str(ws),
                               "--json", *TINY])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)  # the whole of stdout: no progress bars, no table
    assert result["name"] == "base" and result["metric"] == "accuracy" and result["best_epoch"] in (1, 2)
    assert os.path.samefile(result["run_dir"], ws / "base")
    with Ledger(ws) as ledger:
        record = ledger.get("base")
    assert result["score"] == pytest.approx(record.score) == pytest.approx(result["metrics"]["accuracy"])
    assert result["metrics"]["val_loss"] == pytest.approx(record.metrics["val_loss"])

    listing = runner.invoke(app, ["runs", "--workspace", str(ws), "--json"])
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.stdout)
    assert [r["name"] for r in rows] == ["base"] and rows[0]["status"] == "done"
    assert rows[0]["score"] == pytest.approx(record.score) and rows[0]["metrics"] == pytest.approx(record.metrics)

    shown = runner.invoke(app, ["show", "base", "--workspace", str(ws), "--json"])
    assert shown.exit_code == 0, shown.output
    run = json.loads(shown.stdout)
    assert run["record"]["name"] == "base" and run["config"]["model"]["name"] == "test_resnet"
    history = pd.read_csv(ws / "base" / "metrics.csv")
    assert [row["epoch"] for row in run["history"]] == [1, 2]
    assert [row["accuracy"] for row in run["history"]] == pytest.approx(history["accuracy"].tolist())
    assert "best.safetensors" in run["files"] and "metrics.csv" in run["files"]

    table = runner.invoke(app, ["runs", "--workspace", str(ws)])  # the rich table stays the default
    assert table.exit_code == 0 and "base" in table.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.stdout)


@pytest.mark.slow  # an interpreter start-up, MLflow creating its database, a training run
def test_the_real_command_line_keeps_stdout_json_only(color_folder, tmp_path):
    """A real process, --log on too: library logs and warnings must land on stderr, never in the JSON."""
    ws = tmp_path / "ws"
    done = subprocess.run([sys.executable, "-m", "honed", "train", str(color_folder), "--epochs", "1", "--workspace",
                           str(ws), "--json", "--log", "tensorboard", "--log", "mlflow", *TINY],
                          capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0 and (ws / result["name"] / "tensorboard").is_dir()
