"""Two tiny runs of different architectures and input sizes on the same colour data, trained once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import write_image
from tests.training.test_train import tiny_config


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:
    """Every test here on one thread (see tests/conftest.py); a conftest's pytestmark would not apply."""


def colour_folder(root: Path, per_class: int = 12, flipped: int = 0) -> Path:
    """Reddish vs bluish 16 px images; ``flipped`` images per class carry the other class's label."""
    for i in range(per_class):
        red, blue = (200, 40, 40), (40, 40, 200)
        write_image(root / "red" / f"{i}.png", blue if i < flipped else red, noise_seed=i)
        write_image(root / "blue" / f"{i}.png", red if i < flipped else blue, noise_seed=100 + i)
    return root


@dataclass
class Trained:
    data: Path
    workspace: Path
    small: Path  # test_resnet at 16 px
    other: Path  # test_efficientnet at 24 px


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    from honed.training.fit import train

    torch.set_num_threads(1)
    data = colour_folder(tmp_path_factory.mktemp("data") / "colors")
    workspace = tmp_path_factory.mktemp("ws")
    small = train(tiny_config(data, workspace)).run_dir
    config = tiny_config(data, workspace, lr=1e-2)
    config.name, config.model.name, config.preprocess.image_size = "other", "test_efficientnet", 24
    return Trained(data, workspace, small, train(config).run_dir)
