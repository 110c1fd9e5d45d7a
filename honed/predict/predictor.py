"""Predict new images with a trained run: ``honed.load(path).predict(paths)``.

Loading reads a YAML config, a JSON label list and safetensors weights (a run), or a validated bundle.json
and safetensors weights (a bundle, see ``honed.export.bundle``): nothing from disk is executed.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from honed.config import RunConfig
from honed.data.loader import default_workers
from honed.data.preprocess import normalize, to_unit_float
from honed.data.sources import IMAGE_SUFFIXES
from honed.errors import HonedError
from honed.models.factory import build_model, with_preprocess_defaults
from honed.models.strategies import eval_mode
from honed.training.checkpoint import load_weights
from honed.artifacts.run_folder import CONFIG_FILE, LABELS_FILE

if TYPE_CHECKING:
    from honed.tta.setting import TTASetting


class Predictor:
    """A trained model with its own preprocessing and label names; predicts files, folders or images.

    ``tta`` (a ``honed.tta.TTASetting``, or None) applies test-time augmentation to every batch it predicts.
    """

    def __init__(self, model: torch.nn.Module, config: RunConfig, *, task: str, classes: Sequence[str],
                 target_columns: Sequence[str], device: str = "auto", tta: TTASetting | None = None):
        self.config = config
        self.tta = tta
        self.task = task
        self.classes = list(classes)
        self.target_columns = list(target_columns)
        self.device = inference_device(device)
        self.model = eval_mode(model.to(self.device))

    @property
    def image_size(self) -> int:
        return self.config.preprocess.image_size

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [B,3,S,S] -> probabilities [B,C] (classify) or values [B,T] (regress), with TTA if set."""
        x = to_unit_float(images.to(self.device))
        if self.tta is not None:
            return self.tta.apply(x, self.logits, self.task).cpu().numpy()
        out = self.logits(x)
        return (out.softmax(dim=1) if self.task == "classify" else out).cpu().numpy()

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float [B,3,S,S] in [0, 1] on the device -> raw model outputs (logits or values), float32."""
        x = normalize(x, self.config.preprocess.mean, self.config.preprocess.std)
        return eval_mode(self.model)(x).float()

    def batches(self, images, *, batch_size: int = 64, workers: int = -1) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Decoded uint8 batches of the inputs at this model's size, with an error reason per input."""
        dataset = _PredictDataset(list(images), self.image_size)
        workers = default_workers() if workers < 0 else workers
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers if dataset.from_files else 0)
        for batch, batch_errors in loader:
            yield batch, list(batch_errors)

    def predict_outputs(self, images, *, batch_size: int = 64, workers: int = -1,
                        progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[str]]:
        """Outputs for each input (paths, PIL images or tensors) and an error reason per input ('' when fine)."""
        outputs, errors = [], []
        for batch, batch_errors in self.batches(images, batch_size=batch_size, workers=workers):
            outputs.append(self.predict_batch(batch))
            errors += batch_errors
            if progress:
                progress(len(batch))
        width = len(self.classes) if self.task == "classify" else len(self.target_columns)
        return (np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32)), errors

    def predict_proba(self, images, **kwargs) -> np.ndarray:
        if self.task != "classify":
            raise HonedError("predict_proba is for classification runs: use predict")
        return self.predict_outputs(images, **kwargs)[0]

    def predict(self, images, *, top_k: int = 1, **kwargs) -> pd.DataFrame:
        """A table: one row per input with the top-k classes and probabilities (or the predicted values)."""
        items = list(images)
        outputs, errors = self.predict_outputs(items, **kwargs)
        frame = pd.DataFrame({"path": [i if isinstance(i, str) else f"<image {n}>" for n, i in enumerate(items)]})
        if self.task == "classify":
            k = max(1, min(top_k, len(self.classes)))
            order = np.argsort(-outputs, axis=1)[:, :k]
            names = np.asarray(self.classes)
            for rank in range(k):
                suffix = "" if rank == 0 else f"_{rank + 1}"
                frame[f"prediction{suffix}"] = names[order[:, rank]]
                frame[f"probability{suffix}"] = outputs[np.arange(len(items)), order[:, rank]]
        else:
            for i, name in enumerate(self.target_columns):
                frame[name] = outputs[:, i]
        frame["error"] = errors
        failed = frame["error"] != ""
        frame.loc[failed, [c for c in frame.columns if c not in ("path", "error")]] = None
        return frame


class _PredictDataset(Dataset):
    """Decodes inputs in workers; an undecodable file becomes a row with its reason, not a crash."""

    def __init__(self, items: list, image_size: int):
        self.items = items
        self.image_size = image_size
        self.from_files = all(isinstance(i, (str, Path)) for i in items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from honed.data.decode import DecodeError, decode_to_tensor, image_to_tensor

        item = self.items[i]
        try:
            if isinstance(item, (str, Path)):
                return decode_to_tensor(str(item), self.image_size, reject_placeholders=False), ""
            return image_to_tensor(item, self.image_size), ""
        except DecodeError as error:
            return torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), error.reason


def inference_device(device: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or a GPU that is not
    there, is a HonedError rather than torch's RuntimeError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise HonedError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if device != "cpu":
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise HonedError(f"--device {device} asked for, but there is no such CUDA GPU: use --device cpu or auto")
    return torch.device(device)


def load(path: str | Path, *, device: str = "auto", backend: str = "torch", tta: TTASetting | str | None = None,
         weights: str = "best.safetensors") -> Predictor:
    """A Predictor from a run folder (its best weights) or a bundle (folder or .zip, see ``honed export``).

    ``backend="onnx"`` runs a bundle's model.onnx in ONNX Runtime instead of PyTorch. ``tta`` ("flip,crops",
    a ``honed.tta.TTASetting``, or "none" to switch a bundle's own setting off) sets test-time augmentation.
    An ensemble (run folder or bundle) loads as an ``EnsemblePredictor``, which predicts like any Predictor.
    ``weights`` picks another weights file of a run folder, e.g. a snapshot of a cyclic schedule.
    """
    predictor = _load(Path(path), device=device, backend=backend, weights=weights)
    if tta is not None:
        from honed.tta.setting import as_setting

        predictor.tta = as_setting(tta)
    return predictor


def _load(run_dir: Path, *, device: str, backend: str, weights: str) -> Predictor:
    from honed.ensemble.store import ENSEMBLE_FILE, load_ensemble
    from honed.export.bundle import is_bundle, load_bundle

    path = run_dir
    if (run_dir / ENSEMBLE_FILE).is_file():
        return load_ensemble(run_dir, device=device, backend=backend)
    if not (run_dir / CONFIG_FILE).exists() and is_bundle(run_dir):
        return load_bundle(run_dir, device=device, backend=backend)
    if not (run_dir / CONFIG_FILE).exists():
        raise HonedError(f"{path} is not a honed run (no {CONFIG_FILE}) nor a bundle (no bundle.json): "
                         "give a run folder or a bundle, see `honed runs`")
    if backend != "torch":
        raise HonedError(f"backend {backend!r} needs a bundle with that format: run `honed export {run_dir.name} "
                         f"--format {backend}` and load the bundle")
    config = RunConfig.from_yaml(run_dir / CONFIG_FILE)
    labels = json.loads((run_dir / LABELS_FILE).read_text())
    width = len(labels["classes"]) if labels["task"] == "classify" else len(labels["target_columns"])
    model = build_model(config.model, width, for_inference=True)
    config.preprocess = with_preprocess_defaults(config.preprocess, model)
    from honed.models.heads.gbm import with_gbm_head
    from honed.training.probe import refuse_without_weights

    refuse_without_weights(run_dir, "loaded")  # an old gbm probe run kept nothing to predict with
    load_weights(run_dir / weights, model)
    model = with_gbm_head(model, run_dir)  # a gbm probe run: its trees refitted on the stored features
    return Predictor(model, config, task=labels["task"], classes=labels["classes"],
                     target_columns=labels["target_columns"], device=device)


def collect_inputs(inputs: Sequence[str], *, path_column: str = "path") -> list[str]:
    """Files, folders (searched recursively for images) and CSV files of paths -> a list of image paths."""
    paths: list[str] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(str(f.resolve()) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise HonedError(f"folder {p} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        elif p.suffix.lower() == ".csv":
            if not p.exists():
                raise HonedError(f"no such file: {p}")
            table = pd.read_csv(p)
            if path_column not in table.columns:
                raise HonedError(f"{p} has no column {path_column!r}; its columns are: {', '.join(table.columns)}")
            paths += [str((p.parent / v).resolve()) if not Path(v).is_absolute() else v
                      for v in table[path_column].astype(str)]
        elif p.exists():
            paths.append(str(p.resolve()))
        else:
            raise HonedError(f"no such file or folder: {raw}")
    if not paths:
        raise HonedError("nothing to predict: give image files, folders or a CSV of paths")
    return paths
