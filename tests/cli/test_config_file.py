"""``--config FILE`` for ``honed train`` and ``honed workflow``: the file gives the settings, flags given on
the command line override it (even when they repeat a default), and a run's own config.yaml reruns it."""

from __future__ import annotations

import sys

import pytest
import yaml
from typer.testing import CliRunner

from honed.cli import _register, app
from honed.config import OPTION_FIELDS, RunConfig, config_options, with_options
from honed.errors import HonedError


def invoke(*args):
    _register()
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def write_config(path, source, **train):
    path.write_text(yaml.safe_dump({
        "data": {"source": str(source), "val_fraction": 0.25}, "model": {"name": "test_resnet"},
        "preprocess": {"image_size": 16}, "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "workers": 0, **train}}))
    return path


def test_train_takes_a_config_file_and_flags_override_it(color_folder, tmp_path, one_thread):
    ws = tmp_path / "ws"
    config = write_config(tmp_path / "run.yaml", color_folder)
    invoke("train", "--config", config, "--workspace", ws, "--name", "a", "--epochs", "1", "--lr", "0.001", "-q")
    saved = RunConfig.from_yaml(ws / "a" / "config.yaml")
    assert saved.model.name == "test_resnet" and saved.preprocess.image_size == 16  # from the file
    assert saved.train.batch_size == 8 and saved.data.val_fraction == 0.25
    assert saved.train.epochs == 1  # a flag over the file's 2
    assert saved.train.lr == 0.001  # a flag over the file's 0.003, though 0.001 is the option's default
    assert saved.workspace == str(ws) and saved.data.source == str(color_folder)

    # a run's own config.yaml, as it is: the same run again under another name
    invoke("train", "--config", ws / "a" / "config.yaml", "--name", "a2", "-q")
    again = RunConfig.from_yaml(ws / "a2" / "config.yaml")
    assert again.name == "a2" and again.to_dict() | {"name": "a"} == saved.to_dict()


def test_a_bad_config_file_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from honed.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    for argv, words in ((["train", "--config", str(bad)], ("epoch", "valid keys")),
                        (["workflow", "--config", str(tmp_path / "none.yaml")], ("no config at",))):
        monkeypatch.setattr(sys, "argv", ["honed", *argv])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and all(w in err for w in words), err
        assert len(err.strip().splitlines()) == 1


def test_options_map_onto_the_config_and_back():
    options = {"model": "resnet34", "dropout": 0.2, "target": ["age"], "task": "regress", "image_size": 64,
               "lr": 0.01, "log": ("tensorboard",), "name": "x", "data": "d.csv"}
    config = RunConfig.from_dict(with_options({"train": {"epochs": 9}}, options))
    assert config.model.drop_rate == 0.2 and config.data.target_columns == ["age"] and config.train.epochs == 9
    back = config_options(config)
    assert set(back) == set(OPTION_FIELDS)
    assert {k: back[k] for k in options} == {**options, "log": ["tensorboard"]}
    with pytest.raises(HonedError, match="unknown option"):
        with_options({}, {"epoch": 3})


@pytest.fixture
def captured(monkeypatch):
    """The spec ``honed workflow`` would run, without running it."""
    import honed.workflow

    specs = []

    def run(spec, reporter=None):
        specs.append(spec)
        raise SystemExit(0)

    monkeypatch.setattr(honed.workflow, "run_workflow", run)
    return specs


def test_workflow_takes_its_own_spec_or_a_run_config(captured, tmp_path, color_folder):
    spec_file = tmp_path / "wf.yaml"
    spec_file.write_text(yaml.safe_dump({"budget": "5m", "tune_trials": 2, "ensemble_size": 0,
                                         "base": {"data": {"source": str(color_folder)},
                                                  "model": {"name": "test_resnet", "pretrained": False}}}))
    invoke("workflow", "--config", spec_file, "--tune-trials", "1", "--epochs", "3")
    spec = captured[-1]
    assert spec.budget_s == 300 and spec.ensemble_size == 0 and spec.tune_trials == 1
    assert spec.base.model.name == "test_resnet" and not spec.base.model.pretrained and spec.base.train.epochs == 3
    assert spec.name == "workflow" and spec.strategy == "auto"  # the command's defaults where the file is silent

    invoke("workflow", "--config", write_config(tmp_path / "run.yaml", color_folder), "--name", "w2")
    spec = captured[-1]
    assert spec.name == "w2" and spec.base.name == "" and spec.base.preprocess.image_size == 16
    assert spec.base.data.val_fraction == 0.25 and spec.budget_s == 1800  # the run's settings, the default budget

    saved = tmp_path / "workflow-spec.json"  # a workflow's own spec file (JSON is YAML)
    import json

    saved.write_text(json.dumps(spec.to_dict()))
    invoke("workflow", "--config", saved, "--name", "w3", "--budget", "90s")
    assert captured[-1].to_dict() == {**spec.to_dict(), "name": "w3", "budget_s": 90.0}
