"""What an estimator accepts as data, turned into what training and prediction take: a folder, a CSV/Parquet
path, a pandas DataFrame (of image paths or of images in memory), a torch Dataset, or (to predict) a list of
paths or images."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from honed.data.manifest import Manifest
from honed.data.sources import (MANIFEST_SUFFIXES, from_datasets, from_frame, is_image_column, load_source,
                                read_table)
from honed.errors import HonedError
from honed.predict.inputs import collect_inputs
from honed.tasks import get_task

KINDS = "a folder, a CSV/Parquet file, a pandas DataFrame or a torch Dataset"


@dataclass(frozen=True)
class Columns:
    """Which columns of a table hold what (the estimator's ``path_column``, ``label_column`` or ``target``)."""

    task: str
    path_column: str = "path"
    label_column: str = "label"
    target_columns: tuple[str, ...] = ()


def training_data(data: Any, val: Any, columns: Columns) -> tuple[str, Manifest | None]:
    """The config's ``data.source`` and, unless a path alone says it all, the Manifest to train on: ``val``'s
    rows become the validation split (the data's own test rows are kept)."""
    if val is None and _is_path(data):
        return str(Path(data).expanduser()), None
    manifest = manifest_of(data, columns, name="train")
    if val is not None:
        manifest = _with_validation(manifest, manifest_of(val, columns, name="val"))
    return (str(Path(data).expanduser()) if _is_path(data) else ""), manifest


def manifest_of(data: Any, columns: Columns, *, name: str = "data", scoring: bool = False) -> Manifest:
    """Any accepted kind of data as a Manifest (``name`` keys its in-memory images); ``scoring``: data a model
    is scored on, which may hold a single class."""
    least = 1 if scoring else 2
    if _is_path(data):
        return load_source(str(data), task=columns.task, path_column=columns.path_column,
                           label_column=columns.label_column, target_columns=columns.target_columns,
                           min_classes=least)
    if isinstance(data, pd.DataFrame):
        return from_frame(data, task=columns.task, path_column=columns.path_column,
                          label_column=columns.label_column, target_columns=columns.target_columns, name=name,
                          min_classes=least)
    if _is_dataset(data):
        if not get_task(columns.task).is_classification:
            raise HonedError("a torch Dataset gives class indices: for regression give a DataFrame with an image "
                             "(or path) column and target columns")
        return from_datasets({"train": data}, name=name, min_classes=least)
    raise HonedError(f"cannot use a {type(data).__name__} as data: give {KINDS}")


def scored_rows(manifest: Manifest) -> pd.DataFrame:
    """The rows ``evaluate`` scores: the test split when there is one, else the validation split, else all."""
    for split in ("test", "val"):
        if manifest.has_split(split):
            return manifest.split(split)
    return manifest.frame.reset_index(drop=True)


def row_images(manifest: Manifest, rows: pd.DataFrame) -> list:
    """What the predictor reads for each row: its file path, or its in-memory image."""
    if not manifest.in_memory:
        return rows["path"].tolist()
    return [manifest.datasets[origin][int(index)][0] for origin, index in zip(rows["origin"], rows["index"])]


def prediction_items(data: Any, *, path_column: str = "path") -> list:
    """Paths or images to predict, in the order of the data (a folder: its images, sorted)."""
    if _is_path(data):
        path = Path(data).expanduser()
        if path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            table = read_table(path.resolve())
            return _column_items(table, path_column, base=path.resolve().parent, where=str(path))
        return collect_inputs([str(path)])
    if isinstance(data, pd.DataFrame):
        return _column_items(data, path_column, base=Path.cwd(), where="the DataFrame")
    if _is_dataset(data):
        return [data[i][0] for i in range(len(data))]
    if isinstance(data, (list, tuple, np.ndarray)) and len(data) and not isinstance(data, str):
        return [str(Path(item).expanduser().resolve()) if _is_path(item) else item for item in data]
    raise HonedError(f"cannot predict a {type(data).__name__}: give {KINDS}, or a list of paths or images")


def _column_items(table: pd.DataFrame, column: str, *, base: Path, where: str) -> list:
    if column not in table.columns:
        raise HonedError(f"{where} has no column {column!r} (set path_column); its columns are: "
                         f"{', '.join(map(str, table.columns))}")
    if is_image_column(table[column]):
        return list(table[column])
    return [str(p if p.is_absolute() else (base / p).resolve()) for p in map(Path, table[column].astype(str))]


def _with_validation(train: Manifest, val: Manifest) -> Manifest:
    """``train``'s rows (its own validation rows trained on too) and ``val``'s rows as the validation split."""
    if train.in_memory != val.in_memory:
        raise HonedError("give data and val of the same kind: both files (paths) or both images in memory")
    if train.task_type.is_classification:
        unknown = sorted(set(val.frame["label"]) - set(train.classes))
        if unknown:
            raise HonedError(f"val has labels {unknown[:5]} that the training data does not: add training images "
                             "for them or remove those rows")
    own = train.frame.assign(split=train.frame["split"].where(train.frame["split"] == "test", "train"))
    held = val.frame.assign(split="val")
    datasets = dict(train.datasets)
    if val.in_memory:  # val's images under their own keys, whatever names the two sources used
        held = held.assign(origin="val:" + held["origin"].astype(str))
        datasets.update({f"val:{key}": dataset for key, dataset in val.datasets.items()})
    frame = pd.concat([own, held], ignore_index=True)
    return Manifest(frame=frame, task=train.task, classes=train.classes, target_columns=train.target_columns,
                    name=train.name, datasets=datasets)


def _is_path(data: Any) -> bool:
    return isinstance(data, (str, PathLike))


def _is_dataset(data: Any) -> bool:
    from torch.utils.data import Dataset

    return isinstance(data, Dataset)


def as_list(value: str | Sequence[str]) -> list[str]:
    """A column name or several, as a list."""
    return [value] if isinstance(value, str) else list(value)
