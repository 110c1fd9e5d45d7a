"""``Predictor``: a trained model with its own preprocessing and label names, predicting files, folders or
images; ``honed.load(path)`` (``honed.predict.loading``) builds one from a run folder or a bundle."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from honed.artifacts.onnx_runtime import OnnxModel
from honed.combine.calibration import apply_temperature
from honed.artifacts.trained import TrainedModel
from honed.config import RunConfig
from honed.data.loader import default_workers
from honed.data.preprocess import normalize, to_unit_float
from honed.errors import HonedError
from honed.models.cpu_passes import forward_in_passes
from honed.models.strategies import eval_mode
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.predict.inputs import PredictDataset
from honed.tta.setting import TTASetting
from honed.tasks import Task, get_task



class Predictor:
    """A trained model with its own preprocessing and label names; predicts files, folders or images.

    ``tta`` (a ``honed.tta.TTASetting``, or None) applies test-time augmentation to every batch it predicts.
    ``temperature`` (a classifier's fitted one, or None) calibrates its probabilities, after any TTA: the
    predicted class stays the same (``honed.combine.calibration``).
    """

    def __init__(self, model: torch.nn.Module, config: RunConfig, *, task: str, classes: Sequence[str],
                 target_columns: Sequence[str], device: str = "auto", tta: TTASetting | None = None,
                 temperature: float | None = None):
        self.config = config
        self.tta = tta
        self.temperature = temperature
        self.task = task
        self.classes = list(classes)
        self.target_columns = list(target_columns)
        self.device = inference_device(device)
        self.model = eval_mode(model.to(self.device))

    @property
    def task_type(self) -> Task:
        """The task object (``task`` is its name)."""
        return get_task(self.task)

    @classmethod
    def from_trained(cls, trained: TrainedModel, *, device: str = "auto", tta: TTASetting | None = None,
                     calibrate: bool = True) -> "Predictor":
        """A Predictor around a loaded model (``honed.artifacts.load_trained``), with its temperature unless
        ``calibrate=False`` (raw probabilities). An ONNX graph runs on the CPU: moving inputs to a GPU would
        only add copies."""
        device = "cpu" if isinstance(trained.network, OnnxModel) else device
        return cls(trained.network, trained.config, task=trained.labels.task, classes=trained.labels.classes,
                   target_columns=trained.labels.target_columns, device=device, tta=tta,
                   temperature=trained.temperature if calibrate else None)

    @property
    def calibrated(self) -> bool:
        """True when its probabilities are temperature-scaled (a calibrated classifier, calibration on)."""
        return self.temperature is not None and self.task_type.is_classification

    def calibrate(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, C]`` -> calibrated ones with this predictor's temperature (values pass through)."""
        return apply_temperature(outputs, self.temperature) if self.calibrated else outputs

    @property
    def image_size(self) -> int:
        return self.config.preprocess.image_size

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [B,3,S,S] -> probabilities [B,C] (classify) or values [B,T] (regress), with TTA if set."""
        x = to_unit_float(images.to(self.device))
        if self.tta is not None:
            return self.calibrate(self.tta.apply(x, self.logits, self.task).cpu().numpy())
        out = self.logits(x)
        return self.calibrate(self.task_type.outputs(out).cpu().numpy())

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float [B,3,S,S] in [0, 1] on the device -> raw model outputs (logits or values), float32."""
        x = normalize(x, self.config.preprocess.mean, self.config.preprocess.std)
        return forward_in_passes(eval_mode(self.model), x).float()

    def batches(self, images, *, batch_size: int = 64, workers: int = -1) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Decoded uint8 batches of the inputs at this model's size, with an error reason per input."""
        dataset = PredictDataset(list(images), self.image_size)
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
        width = self.task_type.num_outputs(self.classes, self.target_columns)
        return (np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32)), errors

    def predict_proba(self, images, **kwargs) -> np.ndarray:
        if not self.task_type.is_classification:
            raise HonedError("predict_proba is for classification runs: use predict")
        return self.predict_outputs(images, **kwargs)[0]

    def predict(self, images, *, top_k: int = 1, **kwargs) -> pd.DataFrame:
        """A table: one row per input with the top-k classes and probabilities (or the predicted values)."""
        items = list(images)
        outputs, errors = self.predict_outputs(items, **kwargs)
        frame = pd.DataFrame({"path": [i if isinstance(i, str) else f"<image {n}>" for n, i in enumerate(items)]})
        if self.task_type.is_classification:
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


def bundle_tta(meta: dict[str, Any]) -> TTASetting | None:
    """A bundle's TTA setting (None for "none"); a malformed one raises naming the field."""
    return None if meta["tta"] == "none" else TTASetting.from_dict(meta["tta"], where=BUNDLE_FILE)
