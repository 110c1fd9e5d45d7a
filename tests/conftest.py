"""Shared fixtures: small real image folders built on the fly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from honed.data.demo import demo_data_path


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Decoded-image and weights caches go to a temporary folder, never the user's ~/.cache/honed."""
    import os

    previous = os.environ.get("HONED_CACHE")
    os.environ["HONED_CACHE"] = str(tmp_path_factory.mktemp("honed-cache"))
    yield
    if previous is None:
        os.environ.pop("HONED_CACHE", None)
    else:
        os.environ["HONED_CACHE"] = previous


def write_image(path: Path, color, size=(16, 16), noise_seed: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size[1], size[0], 3), np.uint8) + np.asarray(color, np.uint8)
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
        array = np.clip(array.astype(int) + rng.integers(-30, 30, array.shape), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def write_color_folder(root: Path) -> Path:
    """A flat folder of 2 classes (reddish vs bluish), 12 noisy 16px images each: trivially learnable."""
    for i in range(12):
        write_image(root / "red" / f"{i}.png", (200, 40, 40), noise_seed=i)
        write_image(root / "blue" / f"{i}.png", (40, 40, 200), noise_seed=100 + i)
    return root


@pytest.fixture
def color_folder(tmp_path) -> Path:
    return write_color_folder(tmp_path / "colors")


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine thread sync dominates."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar_mini() -> Path:
    """The shipped demo data: 60 train and 20 test CIFAR-10 JPEGs per class."""
    return demo_data_path()


@pytest.fixture
def cifar_copy(tmp_path, cifar_mini) -> Path:
    """A writable copy of the demo data, for tests that plant bad files."""
    return Path(shutil.copytree(cifar_mini, tmp_path / "cifar"))
