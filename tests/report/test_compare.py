"""``compare_runs`` and the ``honed compare`` / ``honed report`` commands on the tiny workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import yaml

from honed.errors import HonedError
from honed.report.compare import compare_runs, config_differences, flatten


def honed(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "honed", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_config_differences_are_flattened_and_only_what_differs():
    a = {"name": "a", "train": {"lr": 0.1, "epochs": 2, "log": []}, "model": {"name": "m"}}
    b = {"name": "b", "train": {"lr": 0.1, "epochs": 3, "log": ["tensorboard"]}, "model": {"name": "m", "x": 1}}
    assert flatten(a) == {"name": "a", "train.lr": 0.1, "train.epochs": 2, "train.log": [], "model.name": "m"}
    changes = {c.key: (c.a, c.b) for c in config_differences(a, b)}
    assert changes == {"name": ("a", "b"), "train.epochs": (2, 3), "train.log": ([], ["tensorboard"]),
                       "model.x": (None, 1)}


def test_compare_runs_shows_the_changed_keys_and_best_epoch_metrics(workspace):
    result = compare_runs(workspace.base, workspace.child)
    keys = {c.key for c in result.config}
    assert keys == {"name", "parent", "change", "train.augment", "train.epochs"}
    changed = {c.key: (c.a, c.b) for c in result.config}
    assert changed["train.epochs"] == (2, 3) and changed["train.augment"] == ("", "hflip")
    assert result.metrics[0].name == result.metric == "accuracy"
    for name, run in (("base", workspace.base), ("child", workspace.child)):  # the best epoch's row, recomputed
        history = pd.read_csv(run / "metrics.csv")
        top = history[history["accuracy"] == history["accuracy"].max()]
        best = top.loc[top["val_loss"].idxmin()]  # ties go to the lower validation loss
        assert result.best_epoch[name] == int(best["epoch"])
        side = "a" if name == "base" else "b"
        assert {m.name: getattr(m, side) for m in result.metrics}["val_loss"] == best["val_loss"]
    for m in result.metrics:
        assert m.delta == m.b - m.a
        assert m.name not in ("epoch", "lr", "seconds")
    base_config = yaml.safe_load((workspace.base / "config.yaml").read_text())
    assert base_config["train"]["lr"] == yaml.safe_load((workspace.child / "config.yaml").read_text())["train"]["lr"]
    assert "train.lr" not in keys


def cli_app():
    """``honed.cli.app`` with its commands registered once, for typer's in-process CliRunner."""
    from honed.cli import _register, app

    if not app.registered_commands:
        _register()
    return app


def test_compare_and_report_commands(workspace, tmp_path):
    from typer.testing import CliRunner

    runner, app = CliRunner(), cli_app()
    done = runner.invoke(app, ["compare", "base", "child", "--workspace", str(workspace.root), "--json"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    library = compare_runs(workspace.base, workspace.child).to_dict()
    assert payload["config"] == library["config"] and payload["metrics"] == library["metrics"]
    tables = runner.invoke(app, ["compare", "base", "child", "--workspace", str(workspace.root)])
    assert tables.exit_code == 0 and "config differences" in tables.stdout and "train.epochs" in tables.stdout
    assert "train.lr" not in tables.stdout
    out = tmp_path / "r.html"
    report = runner.invoke(app, ["report", "--workspace", str(workspace.root), "--out", str(out)])
    assert report.exit_code == 0, report.output
    assert "report written to" in report.stdout and out.read_text().startswith("<!DOCTYPE html>")
    by_path = runner.invoke(app, ["report", str(workspace.child), "--out", str(tmp_path / "c.html")])
    assert by_path.exit_code == 0, by_path.output  # a run folder brings its own workspace's ledger
    page = (tmp_path / "c.html").read_text()
    assert "<title>honed report: child</title>" in page and '<td class="tree"><b>base</b>' in page
    assert "not in a workspace ledger" not in page


def test_a_bad_target_is_one_line_and_exit_code_2(tmp_path):
    missing = honed("report", "nowhere", "--workspace", tmp_path / "empty", "--out", tmp_path / "x.html")
    assert missing.returncode == 2 and "neither a run folder nor a workspace" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.html").exists()
    from typer.testing import CliRunner

    unknown = CliRunner().invoke(cli_app(), ["compare", "a", "b", "--workspace", str(tmp_path)])
    assert isinstance(unknown.exception, HonedError) and "no run 'a'" in str(unknown.exception)
