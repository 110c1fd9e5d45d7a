"""The distance from new data to the data a honed-exported backbone was trained on."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from honed.advise import advise, rule
from honed.models.feature_stats import FeatureStats, frechet_distance, load_stats, save_stats, stats_path
from honed.config import DataConfig
from honed.errors import HonedError
from honed.training.fit import train
from tests.conftest import write_image
from tests.training.test_train import tiny_config


def test_frechet_distance_of_gaussians_matches_its_closed_form():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    cov = mixing @ mixing.T
    mean = rng.normal(size=6)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mean, cov, mean + 2.0, cov) == pytest.approx(6 * 4.0)  # |shift|^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])  # diagonal: sum of (sd_a - sd_b)^2
    assert frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(1 + 1 + 1)


def test_statistics_round_trip_and_a_damaged_file_is_refused(tmp_path):
    features = np.random.default_rng(1).normal(size=(500, 8))
    stats = FeatureStats.of(features, model="m", image_size=32)
    near, far = np.random.default_rng(2).normal(size=(200, 8)), np.random.default_rng(3).normal(2, 1, (200, 8))
    assert stats.distance(near) < 3 * stats.baseline < stats.distance(far)  # same source vs shifted data
    weights = tmp_path / "backbone.safetensors"
    assert load_stats(weights) is None  # none written yet: the advisor goes on without a distance
    save_stats(stats_path(weights), stats)
    loaded = load_stats(weights)
    assert np.allclose(loaded.cov, stats.cov) and loaded.baseline == stats.baseline
    assert (loaded.model, loaded.image_size, loaded.images) == ("m", 32, 500)
    stats_path(weights).write_bytes(b"not a safetensors file")
    with pytest.raises(HonedError, match="not readable feature statistics"):
        load_stats(weights)
    with pytest.raises(HonedError, match="too few"):
        FeatureStats.of(features[:300], model="m", image_size=32)


def _colour_folder(root, colours, per_class: int, seed: int):
    for name, colour in colours.items():
        for i in range(per_class):
            write_image(root / name / f"{i}.png", colour, noise_seed=seed + i)
    return root


def test_exported_backbone_carries_its_data_and_the_advisor_measures_the_distance(tmp_path):
    from honed.cli import _register, app

    source = _colour_folder(tmp_path / "source", {"red": (200, 40, 40), "blue": (40, 40, 200)}, 280, 0)
    run = train(tiny_config(source, tmp_path / "ws", epochs=1))
    _register()
    backbone = tmp_path / "backbone.safetensors"
    done = CliRunner().invoke(app, ["export", str(run.run_dir), "--backbone-only", "--out", str(backbone)])
    assert done.exit_code == 0, done.output
    assert "feature statistics of 420 training images (16 px)" in done.output  # 560 less a quarter for validation
    assert load_stats(backbone).images == 420

    def advice(folder):
        return advise(DataConfig(source=str(folder), val_fraction=0.25), model="test_resnet", weights=str(backbone),
                      image_size=16)

    alike = advice(_colour_folder(tmp_path / "alike", {"red": (200, 40, 40), "blue": (40, 40, 200)}, 60, 10_000))
    unlike = advice(_colour_folder(tmp_path / "unlike", {"light": (230, 230, 120), "dark": (20, 90, 20)}, 60,
                                   20_000))
    assert "Fréchet distance" in alike.reasons[0] and "Fréchet distance" in unlike.reasons[0]
    # new draws of the source lie about as far as the source from itself; other colours, far beyond
    assert alike.measurements.source_ratio < 2 < rule.FAR_FROM_SOURCE < unlike.measurements.source_ratio
    assert unlike.decision == "full" and "far from what the backbone learned on" in unlike.reasons[0]


def test_no_statistics_without_enough_source_images(color_folder, tmp_path):
    from honed.cli import _register, app

    run = train(tiny_config(color_folder, tmp_path / "ws", epochs=1))
    _register()
    backbone = tmp_path / "backbone.safetensors"
    done = CliRunner().invoke(app, ["export", str(run.run_dir), "--backbone-only", "--out", str(backbone)])
    assert done.exit_code == 0 and "no feature statistics" in done.output, done.output
    assert backbone.is_file() and not stats_path(backbone).exists()
    measured = advise(DataConfig(source=str(color_folder), val_fraction=0.25), model="test_resnet",
                      weights=str(backbone), image_size=16).measurements
    assert measured.source_distance is None


def test_a_source_image_damaged_since_training_leaves_the_backbone_and_says_why(tmp_path):
    from honed.cli import _register, app

    source = _colour_folder(tmp_path / "source", {"red": (200, 40, 40), "blue": (40, 40, 200)}, 280, 0)
    run = train(tiny_config(source, tmp_path / "ws", epochs=1))
    for path in sorted((source / "blue").iterdir())[:60]:  # header intact, pixels cut off
        path.write_bytes(path.read_bytes()[:60])
    _register()
    backbone = tmp_path / "backbone.safetensors"
    done = CliRunner().invoke(app, ["export", str(run.run_dir), "--backbone-only", "--out", str(backbone)])
    assert done.exit_code == 0, done.output
    assert "no feature statistics" in done.output and "no longer decodes (truncated)" in done.output
    assert backbone.is_file() and not stats_path(backbone).exists()
