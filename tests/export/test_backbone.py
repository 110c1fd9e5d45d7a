"""honed as its own pretrainer: a run's backbone exported without its head starts a run on other labels."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from honed.training.fit import train
from tests.conftest import write_image
from tests.training.test_train import tiny_config


def test_backbone_only_export_starts_a_run_on_other_labels(color_folder, tmp_path):
    from honed.cli import _register, app

    source = train(tiny_config(color_folder, tmp_path / "ws", epochs=2))
    _register()
    out = tmp_path / "backbone.safetensors"
    done = CliRunner().invoke(app, ["export", str(source.run_dir), "--backbone-only", "--out", str(out)])
    assert done.exit_code == 0, done.output
    backbone, trained = load_file(str(out)), load_file(str(source.run_dir / "best.safetensors"))
    assert not any(key.startswith("fc.") for key in backbone)  # test_resnet's head
    assert set(trained) - set(backbone) == {"fc.weight", "fc.bias"}

    other = tmp_path / "light-dark"  # other labels, other images
    for i in range(12):
        write_image(other / "light" / f"{i}.png", (220, 220, 220), noise_seed=i)
        write_image(other / "dark" / f"{i}.png", (30, 30, 30), noise_seed=50 + i)
    config = tiny_config(other, tmp_path / "ws", epochs=2)
    config.name, config.model.weights, config.model.strategy = "transferred", str(out), "head"
    result = train(config)
    assert result.metrics["accuracy"] >= 0.9
    after = load_file(str(result.run_dir / "best.safetensors"))
    for key, value in backbone.items():  # frozen by --strategy head: exactly the exported backbone
        assert torch.equal(after[key], value), key


def test_backbone_only_needs_a_safetensors_name(color_folder, tmp_path):
    from honed.cli import _register, app

    source = train(tiny_config(color_folder, tmp_path / "ws", epochs=1))
    _register()
    done = CliRunner().invoke(app, ["export", str(source.run_dir), "--backbone-only", "--out", str(tmp_path / "b.pt")])
    assert done.exit_code != 0 and "safetensors" in str(done.exception)
