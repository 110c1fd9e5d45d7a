"""honed on a CUDA GPU: the paths a CPU run never takes (bf16 autocast, channels_last, the decoded-image cache
held in GPU memory with the augmentation done there, predictions brought back to the host, export of weights
trained there). Skipped without a GPU: CI has none. ``benchmarks/gpu_session.sh`` runs them on a GPU machine,
together with the rest of the suite, where ``device="auto"`` then means the GPU."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import honed
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.data.dataset import ImageDataset
from honed.data.fast_loader import make_fast_loader
from honed.data.sources import from_folder
from honed.export.bundle import export_bundle
from honed.training.fit import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _config(source, workspace, **train_kwargs) -> RunConfig:
    options = dict(epochs=3, batch_size=8, lr=3e-3, workers=0, seed=0, device="cuda")
    options.update(train_kwargs)
    return RunConfig(name="gpu", workspace=str(workspace), data=DataConfig(source=str(source), val_fraction=0.25),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(**options))


def _saved_probabilities(run, classes) -> tuple[list[str], np.ndarray]:
    saved = pd.read_parquet(run / "predictions_val.parquet")
    return saved["path"].tolist(), saved[[f"p:{c}" for c in classes]].to_numpy()


def test_a_run_trained_on_the_gpu_learns_and_predicts_the_same_on_cpu_and_gpu(color_folder, tmp_path):
    result = train(_config(color_folder, tmp_path / "ws", augment="hflip,crop:2"))
    assert result.metrics["accuracy"] >= 0.9
    assert result.config.train.precision == "auto"  # bf16 autocast on CUDA
    on_cpu = honed.load(result.run_dir, device="cpu")
    paths, saved = _saved_probabilities(result.run_dir, on_cpu.classes)
    cpu = on_cpu.predict_proba(paths, workers=0)
    gpu = honed.load(result.run_dir, device="cuda").predict_proba(paths, workers=0)
    assert isinstance(gpu, np.ndarray) and gpu.dtype == cpu.dtype
    np.testing.assert_allclose(gpu, cpu, atol=0.03)  # bf16 on the GPU against fp32 on the CPU
    np.testing.assert_allclose(saved, cpu, atol=0.03)
    assert (gpu.argmax(1) == cpu.argmax(1)).all()


def test_the_training_cache_lives_in_gpu_memory_and_serves_uint8_batches(color_folder, tmp_path):
    manifest = from_folder(color_folder)
    frame = manifest.split("train")
    dataset = ImageDataset(frame, manifest.targets(frame), image_size=16)
    loader = make_fast_loader(dataset, batch_size=8, train=True, workers=1, device="cuda",
                              cache_dir=tmp_path / "cache")
    x, y = next(iter(loader))
    assert x.device.type == "cuda" and x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, 16, 16)
    assert len(y) == 8


def test_weights_trained_on_the_gpu_export_to_onnx_with_parity(color_folder, tmp_path):
    result = train(_config(color_folder, tmp_path / "ws", epochs=1))
    report = export_bundle(result.run_dir, tmp_path / "bundle", formats=("bundle", "onnx", "torchscript"))
    assert (tmp_path / "bundle").is_dir()
    assert set(report.parity) >= {"onnx", "torchscript"}
    for name, parity in report.parity.items():
        assert parity.passed and parity.top1_agreement == 1.0, (name, parity)


class _StopAfterFirstEpoch:
    """A reporter that interrupts training after its first epoch, as Ctrl-C would."""

    def message(self, text): ...
    def phase_started(self, label, total): ...
    def advance(self, steps=1): ...
    def phase_finished(self): ...

    def epoch_finished(self, row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt


def test_resuming_on_the_gpu_deterministically_matches_an_uninterrupted_run(color_folder, tmp_path):
    whole = train(_config(color_folder, tmp_path / "a", epochs=2, deterministic=True))
    with pytest.raises(KeyboardInterrupt):
        train(_config(color_folder, tmp_path / "b", epochs=2, deterministic=True), reporter=_StopAfterFirstEpoch())
    resumed = train(RunConfig.from_yaml(tmp_path / "b" / "gpu" / "config.yaml"), resume=True)
    assert list(resumed.history["epoch"]) == [1, 2]
    a, b = load_file(str(whole.run_dir / "last.safetensors")), load_file(str(resumed.run_dir / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # --deterministic on CUDA: bit-identical
