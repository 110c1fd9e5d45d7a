"""``honed analyze``, ``honed improve`` and ``honed augment`` as a user meets them: subprocesses, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from honed.config import (
    DataConfig,
    ModelConfig,
    PreprocessConfig,
    RunConfig,
    TrainConfig,
)
from honed.tracking.ledger import Ledger


def honed(*args, cwd=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "honed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def tiny_run(color_folder, tmp_path) -> Path:
    from honed.training.fit import train

    config = RunConfig(name="base", workspace=str(tmp_path / "ws"),
                       data=DataConfig(source=str(color_folder), val_fraction=0.25),
                       model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                       train=TrainConfig(epochs=1, batch_size=8, lr=3e-3, workers=0, seed=0))
    return train(config).run_dir


def test_analyze_then_improve_by_hand(tiny_run):
    ws = tiny_run.parent
    done = honed("analyze", "base", "--workspace", ws, "--reference-images", "16", "--workers", "0", "-q")
    assert done.returncode == 0, done.stderr
    assert "factors, best explanation first" in done.stdout and "saved to" in done.stdout
    assert (tiny_run / "analysis" / "analysis.json").is_file()
    improved = honed("improve", "base", "--augment", "hflip,rotate:20", "--dropout", "0.1", "--epochs", "1",
                     "--name", "child", "--workspace", ws, "-q")
    assert improved.returncode == 0, improved.stderr
    assert "augment: +hflip,rotate:20; dropout 0 -> 0.1\n" in improved.stdout  # epochs: unchanged
    assert "before" in improved.stdout and "after" in improved.stdout and "accuracy" in improved.stdout
    with Ledger(ws) as ledger:
        child = ledger.get("child")
        assert child.parent == "base" and child.change.startswith("augment: +hflip,rotate:20")
        assert [r.kind for r in ledger.children("base")] == ["analysis", "train"]


@pytest.mark.parametrize("command", ["analyze", "improve"])
def test_a_missing_run_is_one_line_and_exit_code_2(tmp_path, command):
    result = honed(command, "nope", "--workspace", tmp_path / "ws", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "no run 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_augment_list_and_preview(color_folder, tmp_path):
    listed = honed("augment", "list")
    assert listed.returncode == 0 and "rotate" in listed.stdout and "max degrees" in listed.stdout
    out = tmp_path / "grid.png"
    shown = honed("augment", "preview", color_folder, "--augment", "rotate:30,color:0.4", "--out", out, "--n", "3",
                  "--image-size", "16")
    assert shown.returncode == 0, shown.stderr
    from PIL import Image

    with Image.open(out) as grid:
        assert grid.width > grid.height > 0  # 3 rows of 8 tiles
    bad = honed("augment", "preview", color_folder, "--augment", "wobble:3", "--out", out)
    assert bad.returncode == 2 and "unknown augmentation 'wobble'" in bad.stderr
