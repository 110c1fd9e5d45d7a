"""A real tiny workspace, built once per test session: a baseline, a child of it, its analysis, an ensemble of the
two and a bundle of the baseline. Class names carry HTML (``<script>``, ``&``, quotes) on purpose."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT_CLASS = "<script>"
AMP_CLASS = 'blue & "sky"'


@dataclass
class Workspace:
    root: Path  # the workspace folder
    base: Path  # baseline run folder
    child: Path  # child of base: hflip augmentation, one more epoch
    ensemble: Path
    bundle: Path


def _data(root: Path) -> Path:
    from tests.conftest import write_image

    for i in range(12):
        write_image(root / SCRIPT_CLASS / f"{i}.png", (200, 40, 40), noise_seed=i)
        write_image(root / AMP_CLASS / f"{i}.png", (40, 40, 200), noise_seed=100 + i)
    return root


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    from honed.analyze import analyze_run
    from honed.analyze.improve import child_config
    from honed.ensemble.build import create_ensemble
    from honed.export.bundle import export_bundle
    from honed.training.fit import train
    from tests.training.test_train import tiny_config

    tmp = tmp_path_factory.mktemp("report")
    data = _data(tmp / "colors")
    ws = tmp / "ws"
    config = tiny_config(data, ws, epochs=2)
    config.name = "base"
    base = train(config).run_dir
    child, _ = child_config(config, base, augment="hflip", dropout=None, weight_decay=None, epochs=3, name="child")
    child_dir = train(child).run_dir
    analyze_run(base, workers=0, max_images=50, reference_images=16, probes=["brightness", "flip"])
    ensemble = create_ensemble(["base", "child"], name="pair", workspace=ws, folds=2).run_dir
    bundle = export_bundle(base, ws / "base-bundle").path
    return Workspace(ws, base, child_dir, ensemble, bundle)
