"""Stale batch norm statistics: measured, warned about by `honed analyze`, fixed by `honed bn-recalibrate`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from honed.analyze import analyze_run
from honed.analyze.bn_staleness import MEAN_SHIFT_LIMIT, VAR_RATIO_LIMIT, measure_bn_staleness
from honed.analyze.bn_recalibration import RECORD_FILE, recalibrate_run
from honed.training.bn_recalibrate import bn_layers, recalibrate_bn
from honed.training.fit import train
from honed.runtime import Runtime
from tests.cli.test_cli import honed
from tests.training.test_train import tiny_config

PROBE = dict(probes=["flip"], max_images=40, reference_images=128, workers=0)


def test_recalibration_recovers_the_statistics_of_the_data():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    data = [torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8) for _ in range(4)]

    class Pipe:  # uint8 -> float, as honed's evaluation preprocessing (no augmentation)
        def eval_batch(self, images):
            return images.float() / 255

    layers = bn_layers(net)
    stale = measure_bn_staleness(net, [Pipe().eval_batch(x) for x in data], layers)
    assert stale.stale and stale.var_ratio > VAR_RATIO_LIMIT  # fresh statistics (mean 0, var 1) do not fit
    seen = recalibrate_bn(net, [(x, None) for x in data], runtime=Runtime(torch.device("cpu"), None),
                          pipeline=Pipe(), layers=layers)
    assert seen == 32 and not net.training and net[1].momentum == 0.1
    features = net[0](torch.cat([Pipe().eval_batch(x) for x in data]))
    torch.testing.assert_close(net[1].running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    fresh = measure_bn_staleness(net, [Pipe().eval_batch(x) for x in data], layers)
    assert not fresh.stale and fresh.mean_shift < 0.05 and fresh.var_ratio < 0.1


@pytest.fixture(scope="module")
def trained(cifar_mini, tmp_path_factory):
    """test_resnet trained 4 epochs at 32 px on the shipped CIFAR subset: statistics that fit."""
    config = tiny_config(cifar_mini, tmp_path_factory.mktemp("ws"), epochs=4, batch_size=32)
    config.preprocess.image_size = 32
    return train(config)


@pytest.mark.slow  # ~1 min: a real run, analyzed
def test_a_trained_run_gets_no_warning(trained):
    analysis = analyze_run(trained.run_dir, **PROBE)
    staleness = analysis.bn_staleness
    assert not staleness["stale"], staleness["message"]
    assert staleness["var_ratio"] < VAR_RATIO_LIMIT / 2 and staleness["mean_shift"] < MEAN_SHIFT_LIMIT / 2
    assert analysis.fit["verdict"] in ("good fit", "underfitting", "overfitting")
    saved = json.loads((trained.run_dir / "analysis" / "analysis.json").read_text())
    assert saved["bn_staleness"]["stale"] is False and saved["fit"]["verdict"] == analysis.fit["verdict"]


@pytest.mark.slow  # ~2 min: analyze (CLI), recalibrate (CLI), analyze again
def test_corrupted_statistics_are_flagged_and_bn_recalibrate_fixes_them(trained, tmp_path):
    run = shutil.copytree(trained.run_dir, tmp_path / "corrupted")
    original = trained.metrics["accuracy"]
    tensors = load_file(str(run / "best.safetensors"))
    for key in tensors:  # as if the statistics had never been estimated
        if key.endswith("running_mean"):
            tensors[key] = torch.zeros_like(tensors[key])
        elif key.endswith("running_var"):
            tensors[key] = torch.ones_like(tensors[key])
    save_file(tensors, str(run / "best.safetensors"))

    env = {"COLUMNS": "400"}
    shown = honed("analyze", run, "--probes", "flip", "--max-images", "40", "--reference-images", "128",
                  "--workers", "0", "--quiet", env_extra=env)
    assert shown.returncode == 0, shown.stderr
    assert "running statistics look stale" in shown.stdout and f"honed bn-recalibrate {run.name}" in shown.stdout

    fixed = honed("bn-recalibrate", run, "--workers", "0", env_extra=env)
    assert fixed.returncode == 0, fixed.stderr
    assert "before" in fixed.stdout and "after" in fixed.stdout and "accuracy" in fixed.stdout
    record = json.loads((run / RECORD_FILE).read_text())
    assert record["before"]["accuracy"] < original - 0.15  # the damage was real
    assert record["after"]["accuracy"] == pytest.approx(original, abs=0.06)  # and is undone
    assert record["after"]["log_loss"] < trained.metrics["log_loss"] + 0.05
    backup = load_file(str(run / "best.before-bn.safetensors"))
    assert all(torch.equal(backup[k], tensors[k]) for k in tensors)  # the previous (corrupted) weights

    analysis = analyze_run(run, **PROBE)
    assert not analysis.bn_staleness["stale"], analysis.bn_staleness["message"]


def test_nothing_to_recalibrate_when_no_batch_norm_trained(color_folder, tmp_path):
    from honed.errors import HonedError

    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.strategy = "head"  # frozen backbone, plain linear head: no batch norm layer trained
    run = train(config).run_dir
    with pytest.raises(HonedError, match="trained no batch norm layer"):
        recalibrate_run(run, workers=0)
    with pytest.raises(HonedError, match="no swa.safetensors.*--swa"):
        recalibrate_run(run, weights="swa", workers=0)
