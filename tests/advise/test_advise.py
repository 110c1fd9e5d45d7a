"""The advisor: its measurements, its rule at the thresholds the benchmark set, and the real backbone's call."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from honed.advise import ADVICE_FILE, Measurements, advise, decide
from honed.advise import rule
from honed.advise.auto import resolve_strategy, train
from honed.config import DataConfig
from honed.errors import HonedError
from honed.training import fit
from tests.training.test_train import tiny_config


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))


def _measured(**changes) -> Measurements:
    base = Measurements(task="classify", model="m", image_size=96, pretrained=True, train_images=200, classes=10,
                        per_class_min=20, per_class_median=20.0, sample=200, probe_pretrained=0.6,
                        probe_random=0.25, chance=0.1, seconds=1.0)
    return dataclasses.replace(base, **changes)


def test_rule_follows_its_thresholds():
    assert decide(_measured(pretrained=False))[0] == "scratch"
    strong = dict(probe_pretrained=0.25 + rule.PROBE_GAIN + 0.05)
    some = dict(probe_pretrained=0.25 + rule.PROBE_GAIN - 0.05)  # above NO_GAIN: helps a little
    none = dict(probe_pretrained=0.25 + rule.NO_GAIN - 0.01)
    few, probe_max = rule.PROBE_MAX_PER_CLASS - 1, rule.PROBE_MAX_PER_CLASS
    assert decide(_measured(per_class_min=few, **strong))[0] == "probe"
    assert decide(_measured(per_class_min=probe_max, **strong))[0] == rule.DEFAULT_STRATEGY
    assert decide(_measured(per_class_min=few, **some))[0] == rule.DEFAULT_STRATEGY  # weak features: fine-tune
    for gain in (strong, some):
        assert decide(_measured(per_class_min=rule.FULL_MIN_PER_CLASS - 1, **gain))[0] == rule.DEFAULT_STRATEGY
        assert decide(_measured(per_class_min=rule.FULL_MIN_PER_CLASS, **gain))[0] == "full"
    assert decide(_measured(per_class_min=few, **none))[0] == "full"  # no better than random: every layer adapts
    assert decide(_measured(per_class_min=rule.SCRATCH_MIN_PER_CLASS - 1, **none))[0] == "full"
    assert decide(_measured(per_class_min=rule.SCRATCH_MIN_PER_CLASS, **none))[0] == "scratch"
    baseline = 10.0  # with the source's statistics: data far from the source counts as missed, gain or not
    near = dict(source_distance=baseline * (rule.FAR_FROM_SOURCE - 1), source_baseline=baseline)
    far = dict(source_distance=baseline * rule.FAR_FROM_SOURCE, source_baseline=baseline)
    assert decide(_measured(per_class_min=few, **strong, **near))[0] == "probe"
    assert decide(_measured(per_class_min=few, **strong, **far))[0] == "full"
    assert decide(_measured(per_class_min=rule.SCRATCH_MIN_PER_CLASS, **strong, **far))[0] == "scratch"
    decision, reasons = decide(_measured(per_class_min=20, **strong))
    assert any("per class" in r for r in reasons) and any("gain" in r for r in reasons)


def test_measurements_count_classes_and_probe_random_features(color_folder):
    advice = advise(DataConfig(source=str(color_folder), val_fraction=0.25), model="test_resnet", image_size=16)
    m = advice.measurements
    assert (m.classes, m.train_images, m.per_class_min, m.pretrained) == (2, 18, 9, False)
    assert 0.0 <= m.probe_random <= 1.0 and m.probe_pretrained == m.probe_random
    assert advice.decision == "scratch" and "no pretrained weights" in advice.reasons[0]


def test_auto_strategy_records_its_advice_in_the_run(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.strategy = "auto"
    result = train(config)
    recorded = json.loads((result.run_dir / ADVICE_FILE).read_text())
    assert recorded["decision"] == "scratch" and recorded["measurements"]["classes"] == 2
    saved = (result.run_dir / "config.yaml").read_text()
    assert "strategy: scratch" in saved and "strategy auto -> scratch" in saved
    assert config.model.strategy == "auto" and result.config.model.strategy == "scratch"  # returned, not written back


def test_training_refuses_an_unresolved_auto_and_resolving_returns_a_new_config(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.strategy = "auto"
    with pytest.raises(HonedError, match="resolve_strategy"):
        fit.train(config)
    resolved, advice = resolve_strategy(config)
    assert (resolved.model.strategy, advice.decision, config.model.strategy) == ("scratch", "scratch", "auto")
    assert "strategy auto -> scratch" in resolved.change and "auto" not in config.change
    config.model.strategy = "head"
    assert resolve_strategy(config) == (config, None)  # a given strategy: nothing to decide


def test_cli_prints_the_decision_and_its_reasons(color_folder, tmp_path):
    done = subprocess.run([sys.executable, "-m", "honed", "advise", str(color_folder), "--model", "test_resnet",
                           "--image-size", "16", "-q"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HONED_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "advice: --strategy scratch" in done.stdout and "no pretrained weights" in done.stdout


def _position_folder(root, per_class: int):
    """Two classes by where a disk sits (left or right half) on noise: pooled features do not see it."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for side in ("left", "right"):
        (root / side).mkdir(parents=True)
        for i in range(per_class):
            image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            r = float(rng.uniform(3, 6))
            x, y = rng.uniform(r, 16 - r) + (16 if side == "right" else 0), rng.uniform(r, 32 - r)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            ImageDraw.Draw(image).ellipse([x - r, y - r, x + r, y + r], fill=colour)
            image.save(root / side / f"{i}.png")
    return root


def test_real_backbone_probes_a_tiny_photo_set_and_fine_tunes_for_a_task_its_features_miss(cifar_mini, tmp_path):
    """The measured rule on the real ImageNet backbone: 18 CIFAR photos per class transfer (probe); where a
    disk sits, 108 images per class, does not (gain ~0: partial fine-tuning, as on position-100)."""
    import pandas as pd

    rows = [{"path": str(p), "label": p.parent.name} for folder in sorted((cifar_mini / "train").iterdir())
            for p in sorted(folder.iterdir())[:20]]  # 20 CIFAR photos per class: small, and like ImageNet
    pd.DataFrame(rows).to_csv(tmp_path / "photos.csv", index=False)
    photos = advise(DataConfig(source=str(tmp_path / "photos.csv"), val_fraction=0.1),
                    model="tf_efficientnet_lite0", pretrained=True, image_size=64)
    assert photos.measurements.gain >= rule.PROBE_GAIN and photos.decision == "probe", photos.summary()
    position = advise(DataConfig(source=str(_position_folder(tmp_path / "position", 120)), val_fraction=0.1),
                      model="tf_efficientnet_lite0", pretrained=True, image_size=64)
    gain = position.measurements.gain  # measured 0.03 on position-100 in the benchmark: partial fine-tuning
    assert gain < rule.PROBE_GAIN and position.decision == ("partial" if gain >= rule.NO_GAIN else "full"), \
        position.summary()
