"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest


def honed(*args, cwd=None, env_extra=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "honed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


TINY = ["--model", "test_resnet", "--image-size", "16", "--batch-size", "8", "--workers", "0", "--quiet"]


def test_train_predict_runs_show(color_folder, tmp_path):
    ws = tmp_path / "ws"
    done = honed("train", color_folder, "--epochs", "2", "--name", "base", "--workspace", ws, *TINY)
    assert done.returncode == 0, done.stderr
    assert "saved to" in done.stdout
    (tmp_path / "bad.jpg").write_bytes(b"")
    out = tmp_path / "preds.csv"
    pred = honed("predict", "base", color_folder / "red", tmp_path / "bad.jpg", "--out", out, "--workspace", ws,
                 "--top-k", "2", "-q")
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 13 and (table["prediction"][:12] == "red").mean() >= 0.9
    assert table["error"].iloc[-1] != "" and table["prediction"].iloc[-1] == ""
    listing = honed("runs", "--workspace", ws)
    assert listing.returncode == 0 and "base" in listing.stdout
    shown = honed("show", "base", "--workspace", ws)
    assert shown.returncode == 0 and "metrics per epoch" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "/no/such/folder"], "data not found"),
    (["train", "{flat}", "--model", "resnet_doesnotexist"], "unknown model"),
    (["train", "{flat}", "--model", "resnet18", "--pretrained"], "could not download pretrained weights"),
    (["train", "{flat}", "--strategy", "magic"], "--strategy"),
    (["train", "{flat}", "--val-fraction", "2"], "--val-fraction"),
    (["train", "{single}"], "at least 2"),
    (["train", "{flat}", "--weights", "/no/such.safetensors"], "no such|not found|does not exist"),
    (["predict", "nope", "x.jpg", "--workspace", "{ws}"], "no run 'nope'"),
    (["runs", "--workspace", "{ws}"], "no workspace"),
    (["train", "--torchvision", "CIFAR10", "x"], "needs --root"),
    # click's own usage errors, told in one line too (typer draws them in a box over several)
    (["improve", "nope", "--image-size", "5", "--workspace", "{ws}"], r"--image-size.*honed improve --help"),
    (["improve"], "Missing argument 'run'"),
    (["no-such-command"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_code_2(color_folder, tmp_path, args, message):
    single = tmp_path / "single"
    (single / "only").mkdir(parents=True)
    (single / "only" / "a.png").write_bytes((color_folder / "red" / "0.png").read_bytes())
    fill = {"{flat}": str(color_folder), "{single}": str(single), "{ws}": str(tmp_path / "ws")}
    result = honed(*[fill.get(a, a) for a in args], cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    done = honed("demo", "--workspace", tmp_path / "ws", "--epochs", "1", "-q", cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", done.stdout).group(1))
    assert accuracy > 0.25  # 10 classes: chance is 0.10; the pretrained backbone carries it well past that
