"""A finished run as error analysis reads it: its config, labels, exact split, validation predictions,
training history and model, and its images decoded with the run's own preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from honed.config import RunConfig
from honed.data.dataset import ImageDataset
from honed.data.decode import DecodeError
from honed.data.loader import default_workers
from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.artifacts.run_folder import BEST_WEIGHTS, CONFIG_FILE, LABELS_FILE, MANIFEST_FILE, VAL_PREDICTIONS, RunFolder
from honed.tasks import Task

REQUIRED = (CONFIG_FILE, LABELS_FILE, MANIFEST_FILE, VAL_PREDICTIONS, BEST_WEIGHTS)


@dataclass
class ImageSet:
    """Decoded images of one split (or a sample of it) with their targets and paths."""

    images: torch.Tensor  # uint8 [N, 3, S, S]
    targets: np.ndarray  # class indices [N] or float targets [N, T]
    paths: list[str]


@dataclass
class RunSource:
    """A finished run's files, read once: what analysis and improvement start from."""

    run_dir: Path
    config: RunConfig
    manifest: Manifest
    predictions: pd.DataFrame  # predictions_val.parquet: one row per validation image
    history: pd.DataFrame | None  # metrics.csv, when present

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def task_type(self) -> Task:
        return self.manifest.task_type

    def sample(self, split: str, limit: int, *, seed: int, workers: int = -1) -> ImageSet:
        """Up to ``limit`` images of ``split``, a seeded sample stratified by class, decoded as in training."""
        frame = self.manifest.split(split)
        if frame.empty:
            raise HonedError(f"run {self.name} has no {split} images to analyze")
        frame = _stratified(frame, limit, seed, by="label" if self.task_type.is_classification else None)
        dataset = ImageDataset(frame, self.manifest.targets(frame), self.config.preprocess.image_size,
                               datasets=self.manifest.datasets)
        workers = default_workers() if workers < 0 else workers
        loader = DataLoader(dataset, batch_size=64, num_workers=workers if len(frame) > 256 else 0)
        try:
            images = torch.cat([batch for batch, _ in loader])
        except (DecodeError, OSError, RuntimeError) as error:  # a file moved or changed since training
            raise HonedError(f"cannot read the {split} images of run {self.name} ({error}); error analysis "
                             "needs the run's image files where they were when it trained") from None
        return ImageSet(images, np.asarray(dataset.targets), list(frame["path"]))


def load_run(run_dir: str | Path) -> RunSource:
    """Read a run folder, or say which file is missing and how to get it."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise HonedError(f"{run_dir} is not a honed run (no {CONFIG_FILE}): give a run name or folder, "
                         "see `honed runs`")
    missing = [name for name in REQUIRED if not (run_dir / name).exists()]
    if missing:
        raise HonedError(f"run {run_dir.name} lacks {', '.join(missing)}: it has not finished an epoch; "
                         "train it (or --resume it) first")
    run = RunFolder(run_dir)
    return RunSource(run_dir, run.config(), run.manifest(), run.predictions("val"), run.history())


def sample_images(data: str, n: int, *, image_size: int, seed: int = 0, path_column: str = "path",
                  label_column: str = "label") -> torch.Tensor:
    """``n`` training images of a data source (spread over its classes, seeded), decoded at ``image_size``:
    what ``honed augment preview`` shows."""
    from honed.data.decode import decode_to_tensor
    from honed.data.sources import load_source

    manifest = load_source(data, path_column=path_column, label_column=label_column)
    if manifest.in_memory:
        raise HonedError("previews need image files: give a folder or a manifest of paths")
    frame = _stratified(manifest.split("train"), n, seed, by="label")
    images = []
    for path in frame["path"]:
        try:
            images.append(decode_to_tensor(path, image_size))
        except DecodeError:
            continue  # a preview skips unreadable files; `honed data check` lists them
    if not images:
        raise HonedError(f"none of the {len(frame)} sampled images of {data} could be decoded: run `honed data check`")
    return torch.stack(images[:n])


def _stratified(frame: pd.DataFrame, limit: int, seed: int, by: str | None) -> pd.DataFrame:
    """At most ``limit`` rows, drawn evenly from each group, in the frame's order."""
    if len(frame) <= limit:
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if by is None:
        keep = np.sort(rng.choice(len(frame), size=limit, replace=False))
        return frame.iloc[keep].reset_index(drop=True)
    share = limit / len(frame)
    chosen = []
    for _, group in frame.groupby(by, sort=True):
        n = max(1, int(round(share * len(group))))
        chosen += list(rng.choice(group.index.to_numpy(), size=min(n, len(group)), replace=False))
    return frame.loc[sorted(chosen)].reset_index(drop=True)
