"""``load_trained``: a trained model from its files, a run folder or a bundle, without any training code.

What comes back is what every consumer of a trained model needs (prediction, serving, export, analysis, BN
recalibration): the network in eval mode, the kind of head it predicts with, the preprocessing it expects,
and what its outputs mean. Loading never executes anything from disk: the architecture comes from honed's
model factory by name, weights from safetensors, everything else from validated YAML and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Any, Callable
import zipfile

from safetensors.torch import load as load_safetensors
import torch
from torch import nn

from honed.artifacts.bundle_files import BUNDLE_FILE, ONNX_FILE, BundleFiles, checked_file, read_meta
from honed.artifacts.bundle_meta import WEIGHTS_FILE, validate_meta
from honed.artifacts.onnx_runtime import OnnxModel
from honed.artifacts.run_folder import BEST_WEIGHTS, CONFIG_FILE, Labels, RunFolder
from honed.artifacts.weights import load_weights
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig
from honed.errors import HonedError
from honed.models.factory import build_model, with_preprocess_defaults
from honed.models.heads.gbm import HEAD_FILE as GBM_FILE, GbmHead, GbmProbeModel, with_gbm_head
from honed.models.state_dicts import head_keys
from honed.registry import Registry
from honed.tasks import get_task



@dataclass
class TrainedModel:
    """A trained network ready to predict, with what it needs around it."""

    network: nn.Module  # eval mode, on the CPU; float [B,3,S,S] normalized -> logits or values
    head: str  # "linear": the network's own head; "gbm": stored trees on its features
    config: RunConfig  # the run's config (a bundle: the part of it that the bundle carries)
    labels: Labels
    source: Path  # the run folder or bundle it came from
    bundle_meta: dict[str, Any] | None = None  # a bundle's validated bundle.json; None for a run folder
    calibration: dict[str, Any] | None = None  # calibration.json / bundle.json "calibration"; None: uncalibrated

    @property
    def temperature(self) -> float | None:
        """The temperature its probabilities are divided by (in log space); None: not calibrated."""
        return None if self.calibration is None else float(self.calibration["temperature"])

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.config.preprocess


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True for a bundle folder (holds bundle.json) or a zip file, which loading then validates."""
    path = Path(path)
    return (path / BUNDLE_FILE).is_file() if path.is_dir() else (path.is_file() and zipfile.is_zipfile(path))


def load_trained(path: str | os.PathLike[str], *, weights: str = BEST_WEIGHTS, backend: str = "torch",
                 gbm_head: bool = True) -> TrainedModel:
    """The trained model in a run folder (its ``weights`` file) or a bundle (folder or .zip; ``backend="onnx"``
    runs its model.onnx in ONNX Runtime). Ensembles are several models: ``honed.predict.load`` takes them.
    ``gbm_head=False`` leaves out a gbm probe run's trees: the network alone (what export exports from)."""
    BACKENDS.get(backend)  # an unknown name: refused before anything is read
    path = Path(path)
    if (path / CONFIG_FILE).exists():
        if backend != "torch":
            raise HonedError(f"backend {backend!r} needs a bundle with that format: run `honed export {path.name} "
                             f"--format {backend}` and load the bundle")
        return _from_run(RunFolder(path), weights, gbm_head)
    if is_bundle(path):
        files = BundleFiles(path)
        return from_bundle_files(files, read_meta(files), backend=backend)
    raise HonedError(f"{path} is not a honed run (no {CONFIG_FILE}) nor a bundle (no {BUNDLE_FILE}): "
                     "give a run folder or a bundle, see `honed runs`")


def _from_run(run: RunFolder, weights: str, gbm_head: bool) -> TrainedModel:
    config, labels = run.config(), run.labels()
    network = build_model(config.model, labels.num_outputs, for_inference=True)
    config.preprocess = with_preprocess_defaults(config.preprocess, network)
    run.refuse_without_weights("loaded")  # an old gbm probe run kept nothing to predict with
    load_weights(run.file(weights), network)
    model = with_gbm_head(network, run.path) if gbm_head else network  # a gbm probe: its trees on its features
    head = "gbm" if model is not network else "linear"
    calibration = run.calibration() if weights == BEST_WEIGHTS else None  # fitted on the best weights' outputs
    return TrainedModel(model.eval(), head, config, labels, run.path, calibration=calibration)


def from_bundle_files(files: BundleFiles, raw: Any, *, backend: str = "torch") -> TrainedModel:
    """One (member) bundle's model from its files and its parsed bundle.json, validated here."""
    meta = validate_meta(raw)
    config = _bundle_config(meta)
    model = BACKENDS[backend](files, meta, config)
    head = "gbm" if GBM_FILE in meta["files"] else "linear"
    if head == "gbm" and backend == "torch":  # the network computes the features, the trees predict from them
        # (the onnx backend's model.onnx of a gbm probe holds network and trees in one graph)
        gbm = GbmHead.from_bytes(checked_file(files, meta, GBM_FILE), where=f"{GBM_FILE} in {files.path}")
        model = GbmProbeModel(model, gbm)
    labels = Labels(meta["task"], list(meta["classes"]), list(meta["target_columns"]))
    return TrainedModel(model, head, config, labels, files.path, bundle_meta=meta,
                        calibration=meta.get("calibration"))


def _bundle_config(meta: dict[str, Any]) -> RunConfig:
    """The slice of a RunConfig a predictor uses, from validated metadata only."""
    pre = meta["preprocessing"]
    return RunConfig(name=meta["name"], data=DataConfig(task=meta["task"]),
                     model=ModelConfig(name=meta["model"]["name"], head_bn=meta["model"].get("head_bn", False)),
                     preprocess=PreprocessConfig(image_size=pre["image_size"], mean=list(pre["mean"]),
                                                 std=list(pre["std"])))


BACKENDS: Registry[Callable[[BundleFiles, dict[str, Any], RunConfig], nn.Module]] = Registry("backend")


@BACKENDS.register("torch")
def _torch_backend(files: BundleFiles, meta: dict[str, Any], config: RunConfig) -> nn.Module:
    """The architecture from honed's factory by name, filled with the bundle's safetensors weights."""
    return _torch_model(config, meta, checked_file(files, meta, WEIGHTS_FILE))


@BACKENDS.register("onnx")
def _onnx_backend(files: BundleFiles, meta: dict[str, Any], config: RunConfig) -> nn.Module:
    """The bundle's BatchNorm-fused graph in ONNX Runtime, on the CPU."""
    return OnnxModel(checked_file(files, meta, ONNX_FILE))


def _torch_model(config: RunConfig, meta: dict[str, Any], weights: bytes) -> nn.Module:
    model = build_model(config.model, meta["model"]["num_outputs"], for_inference=True)
    config.preprocess = with_preprocess_defaults(config.preprocess, model)
    try:
        tensors = load_safetensors(weights)
    except Exception as error:  # safetensors parses a header and raw tensors; any failure means a bad file
        raise HonedError(f"{WEIGHTS_FILE} is not a valid safetensors file ({type(error).__name__}: {error}); "
                         "bundles only hold safetensors weights") from None
    _check_fit(model, tensors, meta)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def _check_fit(model: nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """The weights must be exactly the architecture's tensors; a head of another size means a wrong label list."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise HonedError(f"{WEIGHTS_FILE} does not fit {meta['model']['name']}: {len(missing)} missing and "
                         f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[:3]})")
    wrong = [k for k in expected if tuple(tensors[k].shape) != expected[k]]
    if not wrong:
        return
    head = [k for k in wrong if k in head_keys(model)]
    if head:
        labels = get_task(meta["task"]).labels_key
        raise HonedError(f"{BUNDLE_FILE} lists {len(meta[labels])} {labels} but the weights have "
                         f"{tensors[head[0]].shape[0]} outputs: the label list does not belong to these weights")
    raise HonedError(f"{WEIGHTS_FILE} does not fit {meta['model']['name']}: {wrong[0]} has shape "
                     f"{tuple(tensors[wrong[0]].shape)}, expected {expected[wrong[0]]}")
