"""Predict new images with a trained run: ``honed.load(path).predict(paths)``.

Loading reads a YAML config, a JSON label list and safetensors weights (a run), or a validated bundle.json
and safetensors weights (a bundle, see ``honed.export.bundle``): nothing from disk is executed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from honed.config import RunConfig
from honed.data.loader import default_workers
from honed.data.preprocess import normalize, to_unit_float
from honed.data.sources import IMAGE_SUFFIXES
from honed.errors import HonedError
from honed.models.factory import build_model
from honed.models.transfer import eval_mode
from honed.training.checkpoint import load_weights
from honed.tracking.runs import CONFIG_FILE, LABELS_FILE


class Predictor:
    """A trained model with its own preprocessing and label names; predicts files, folders or images."""

    def __init__(self, model: torch.nn.Module, config: RunConfig, *, task: str, classes: Sequence[str],
                 target_columns: Sequence[str], device: str = "auto"):
        self.config = config
        self.task = task
        self.classes = list(classes)
        self.target_columns = list(target_columns)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.model = eval_mode(model.to(self.device))

    @property
    def image_size(self) -> int:
        return self.config.preprocess.image_size

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [B,3,S,S] -> probabilities [B,C] (classify) or values [B,T] (regress)."""
        x = normalize(to_unit_float(images.to(self.device)), self.config.preprocess.mean, self.config.preprocess.std)
        out = eval_mode(self.model)(x).float()
        return (out.softmax(dim=1) if self.task == "classify" else out).cpu().numpy()

    def predict_outputs(self, images, *, batch_size: int = 64, workers: int = -1,
                        progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[str]]:
        """Outputs for each input (paths, PIL images or tensors) and an error reason per input ('' when fine)."""
        dataset = _PredictDataset(list(images), self.image_size)
        workers = default_workers() if workers < 0 else workers
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers if dataset.from_files else 0)
        outputs, errors = [], []
        for batch, batch_errors in loader:
            outputs.append(self.predict_batch(batch))
            errors += list(batch_errors)
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


def load(path: str | Path, *, device: str = "auto", backend: str = "torch") -> Predictor:
    """A Predictor from a run folder (its best weights) or a bundle (folder or .zip, see ``honed export``).

    ``backend="onnx"`` runs a bundle's model.onnx in ONNX Runtime instead of PyTorch.
    """
    from honed.export.bundle import is_bundle, load_bundle

    run_dir = Path(path)
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
    model = build_model(config, width, for_inference=True)
    load_weights(run_dir / "best.safetensors", model)
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
