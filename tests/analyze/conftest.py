"""Planted weaknesses: train on upright, large, crisp, bright shapes; validate on shapes with ONE factor shifted.

Each case is an ImageFolder (``train/`` with default factors, ``val/`` with ``ShapeFactors().shift(name)``), a
baseline run trained on it, its analysis, and the baseline's accuracy on an unshifted validation set, so the
accuracy lost to the planted factor is known. Cases are built once per test session, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from honed.analyze import Analysis, analyze_run
from honed.config import (
    DataConfig,
    ModelConfig,
    PreprocessConfig,
    RunConfig,
    TrainConfig,
)
from honed.data.synthetic import ShapeFactors, generate_shapes

TRAIN_PER_CLASS = 100  # 4 classes
VAL_PER_CLASS = 50
SIZE = 32
BASELINE_EPOCHS = 5


@dataclass
class PlantedCase:
    shift: str
    data: Path  # train/ (default factors) and val/ (shifted)
    run_dir: Path  # the baseline run
    analysis: Analysis
    clean_accuracy: float  # the baseline on unshifted validation images
    shifted_accuracy: float  # the baseline on the shifted validation images (its own val split)


def baseline_config(data: Path, workspace: Path) -> RunConfig:
    return RunConfig(name="baseline", workspace=str(workspace), data=DataConfig(source=str(data)),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=SIZE),
                     train=TrainConfig(epochs=BASELINE_EPOCHS, batch_size=32, lr=3e-3, workers=0, seed=0))


def build_case(root: Path, shift: str) -> PlantedCase:
    import honed
    from honed.predict import collect_inputs
    from honed.training.fit import train

    data = root / "data"
    generate_shapes(data, n_per_class=TRAIN_PER_CLASS, size=SIZE, split="train")
    generate_shapes(data, n_per_class=VAL_PER_CLASS, size=SIZE, split="val", seed=1,
                    factors=ShapeFactors().shift(shift))
    clean = generate_shapes(root / "clean", n_per_class=VAL_PER_CLASS, size=SIZE, split="val", seed=1)
    result = train(baseline_config(data, root / "ws"))
    paths = collect_inputs([str(clean)])
    predicted = honed.load(result.run_dir).predict(paths, workers=0)["prediction"]
    clean_accuracy = float((predicted == [Path(p).parent.name for p in paths]).mean())
    analysis = analyze_run(result.run_dir, workers=0)
    return PlantedCase(shift, data, result.run_dir, analysis, clean_accuracy, result.metrics["accuracy"])


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """``planted(shift)`` -> the PlantedCase for that synthetic shift, built on first use."""
    cases: dict[str, PlantedCase] = {}

    def get(shift: str) -> PlantedCase:
        if shift not in cases:
            cases[shift] = build_case(tmp_path_factory.mktemp(f"planted-{shift}"), shift)
        return cases[shift]

    return get
