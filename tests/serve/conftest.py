"""A tiny trained bundle and some images, shared by the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from honed.export.bundle import export_bundle
from honed.training.fit import train
from tests.conftest import write_color_folder, write_image
from tests.training.test_train import tiny_config


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:
    """Every test here on one thread (see tests/conftest.py); a conftest's pytestmark would not apply."""


@pytest.fixture(scope="session")
def serve_data(tmp_path_factory) -> Path:
    root = write_color_folder(tmp_path_factory.mktemp("serve-data") / "colors")
    return root


@pytest.fixture(scope="session")
def bundle(serve_data, tmp_path_factory) -> Path:
    """A tiny run (timm test_resnet at 16px) exported as a bundle folder."""
    torch.set_num_threads(1)
    run = train(tiny_config(serve_data, tmp_path_factory.mktemp("serve-ws"), epochs=2)).run_dir
    return export_bundle(run, tmp_path_factory.mktemp("serve-out") / "bundle").path


@pytest.fixture(scope="session")
def images(serve_data, tmp_path_factory) -> list[Path]:
    """Files of several formats and sizes: the training PNGs plus a JPEG, a wide RGBA PNG and a grey GIF."""
    extra = tmp_path_factory.mktemp("serve-images")
    files = sorted(serve_data.rglob("*.png"))[::3]
    files.append(write_image(extra / "photo.jpg", (180, 60, 50), size=(40, 30), noise_seed=7))
    rgba = Image.new("RGBA", (50, 20), (30, 40, 220, 128))
    rgba.save(extra / "wide.png")
    Image.new("L", (24, 24), 90).save(extra / "grey.gif")
    return files + [extra / "wide.png", extra / "grey.gif"]
