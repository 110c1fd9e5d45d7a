"""The artifacts layer: a trained run read through RunFolder, and ``load_trained`` giving the same network,
preprocessing and labels from the run folder and from its bundle, without any training code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from honed.artifacts import RunFolder, load_trained
from honed.artifacts.run_folder import BEST_WEIGHTS, CONFIG_FILE, LABELS_FILE, MANIFEST_FILE, METRICS_FILE
from honed.errors import HonedError
from honed.export.bundle import export_bundle
from honed.training.fit import train
from tests.conftest import write_color_folder
from tests.training.test_train import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = write_color_folder(tmp_path_factory.mktemp("data") / "colors")
    torch.set_num_threads(1)
    return train(tiny_config(root, tmp_path_factory.mktemp("ws"))).run_dir


def test_run_folder_reads_what_training_wrote(run_dir):
    run = RunFolder(run_dir)
    assert run.is_run and not run.is_ensemble and run.name == run_dir.name
    labels = run.labels()
    assert labels.task == "classify" and sorted(labels.classes) == ["blue", "red"] and labels.num_outputs == 2
    assert labels.to_dict() == json.loads((run_dir / LABELS_FILE).read_text())
    assert run.config().name == run_dir.name
    manifest = run.manifest()
    assert len(manifest.frame) == 24 and set(manifest.frame["split"]) == {"train", "val"}
    history = run.history()
    assert list(history["epoch"]) == list(range(1, len(history) + 1))
    assert len(run.predictions("val")) == (manifest.frame["split"] == "val").sum()
    assert run.predictions("test") is None  # the colour folder has no test split
    for name in (CONFIG_FILE, LABELS_FILE, MANIFEST_FILE, METRICS_FILE, BEST_WEIGHTS):
        assert run.file(name).is_file()


def test_load_trained_from_a_run_and_from_its_bundle_agree(run_dir, tmp_path):
    from_run = load_trained(run_dir)
    bundle = export_bundle(run_dir, tmp_path / "bundle").path
    from_bundle = load_trained(bundle)
    assert from_run.head == from_bundle.head == "linear"
    assert from_run.labels == from_bundle.labels
    assert from_run.preprocess.image_size == from_bundle.preprocess.image_size > 0
    assert from_run.preprocess.mean == from_bundle.preprocess.mean and len(from_run.preprocess.mean) == 3
    assert not from_run.network.training and not from_bundle.network.training
    x = torch.rand(3, 3, from_run.preprocess.image_size, from_run.preprocess.image_size)
    with torch.no_grad():
        assert torch.allclose(from_run.network(x), from_bundle.network(x), atol=1e-6)
    assert from_bundle.bundle_meta["name"] == run_dir.name and from_run.bundle_meta is None


def test_load_trained_refuses_what_is_not_a_model(run_dir, tmp_path):
    with pytest.raises(HonedError, match="is not a honed run"):
        load_trained(tmp_path)
    with pytest.raises(HonedError, match="backend 'onnx' needs a bundle"):
        load_trained(run_dir, backend="onnx")
    with pytest.raises(HonedError, match="unknown backend"):
        load_trained(run_dir, backend="tflite")
    with pytest.raises(HonedError, match="no weights at"):
        load_trained(run_dir, weights="missing.safetensors")
