"""Turn what the user points at into a Manifest: a folder of class folders, a CSV/Parquet manifest, a pandas
DataFrame (of paths or of images in memory), a torchvision dataset already on disk, or the user's own torch Dataset."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.tasks import get_task

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


def load_source(
    source: str,
    *,
    task: str = "classify",
    path_column: str = "path",
    label_column: str = "label",
    target_columns: Sequence[str] = (),
    torchvision_root: str = "",
    min_classes: int = 2,
) -> Manifest:
    """Dispatch on what ``source`` is and return its Manifest. ``min_classes``: 2 to train on; 1 for data a
    trained model is only scored on."""
    if torchvision_root:
        return from_torchvision(source, torchvision_root)
    path = Path(source).expanduser()
    if not path.exists():
        raise HonedError(f"data not found: {source} (give a folder of class folders, a CSV/Parquet manifest, "
                         "or --torchvision NAME --root DIR)")
    if path.is_dir():
        if not get_task(task).is_classification:
            raise HonedError("a folder of class folders is classification data: for regression give a CSV/Parquet "
                             "manifest with --target columns")
        return from_folder(path, min_classes=min_classes)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return from_table(path, task=task, path_column=path_column, label_column=label_column,
                          target_columns=target_columns, min_classes=min_classes)
    raise HonedError(f"{source} is neither a folder nor a .csv/.parquet manifest")


def from_folder(root: Path, *, min_classes: int = 2) -> Manifest:
    """``root/train/<class>/*`` (+ optional ``val``/``test``), or a flat ``root/<class>/*`` of training data."""
    root = root.resolve()
    subdirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    split_dirs = {SPLIT_ALIASES[name]: d for name, d in subdirs.items() if name in SPLIT_ALIASES}
    if split_dirs and "train" not in split_dirs:
        raise HonedError(f"{root} has {', '.join(sorted(split_dirs))} but no train/ folder: add train/<class>/ folders")
    if not split_dirs:
        split_dirs = {"train": root}
    rows = []
    for split, folder in split_dirs.items():
        rows += _class_folder_rows(folder, split)
    frame = pd.DataFrame(rows, columns=["path", "label", "split"])
    classes = sorted(frame.loc[frame["split"] == "train", "label"].unique())
    _check_classes(frame, classes, where=str(root), min_classes=min_classes)
    return Manifest(frame=frame, task="classify", classes=classes, name=str(root))


def _class_folder_rows(folder: Path, split: str) -> list[tuple[str, str, str]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise HonedError(f"{folder} has no class folders: put images in {folder}/<class name>/")
    rows = []
    for class_dir in class_dirs:
        files = image_files(class_dir)
        if not files:
            raise HonedError(f"class folder {class_dir} has no images: add images or remove the folder")
        rows += [(path, class_dir.name, split) for path in files]
    return rows


def image_files(folder: Path) -> list[str]:
    """The image files under ``folder`` and its sub-folders, in the order of their paths' parts: what
    ``sorted(p for p in folder.rglob("*") if p.is_file() and <image suffix>)`` gives, without a ``stat`` for
    each file (``os.scandir`` tells the type from the listing). Every run lists its images: CIFAR-10's
    60,000 took 1.3 s through pathlib, about 0.1 s this way. Like ``rglob``, symlinked files are listed and
    symlinked folders are not entered; unlike it, a folder that cannot be read is an error, not silently
    left out with its images."""
    found: list[tuple[tuple[str, ...], str]] = []
    pending: list[tuple[str, tuple[str, ...]]] = [(os.fspath(folder), ())]
    while pending:
        directory, parts = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise HonedError(f"cannot read the folder {directory} ({error.strerror}): fix its permissions or move "
                             "it out of the data") from error
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, parts + (entry.name,)))
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
                found.append((parts + (entry.name,), entry.path))
    return [path for _, path in sorted(found)]


def from_table(
    path: Path,
    *,
    task: str = "classify",
    path_column: str = "path",
    label_column: str = "label",
    target_columns: Sequence[str] = (),
    min_classes: int = 2,
) -> Manifest:
    """A CSV/Parquet manifest: a path column (relative to the file's folder or absolute), a label column
    (classification) or numeric target columns (regression), and an optional ``split`` column."""
    path = path.resolve()
    return _from_rows(read_table(path), where=str(path), base=path.parent, task=task, path_column=path_column,
                      label_column=label_column, target_columns=target_columns, min_classes=min_classes)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; HonedError when it cannot be read."""
    try:
        return pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as error:  # pandas raises many types for a malformed file
        raise HonedError(f"cannot read manifest {path}: {error}") from None


def from_frame(
    table: pd.DataFrame,
    *,
    task: str = "classify",
    path_column: str = "path",
    label_column: str = "label",
    target_columns: Sequence[str] = (),
    name: str = "DataFrame",
    min_classes: int = 2,
) -> Manifest:
    """A pandas DataFrame laid out as a CSV manifest, whose ``path_column`` holds image paths (relative to the
    working folder, or absolute) or the images themselves (PIL images, HWC arrays, CHW tensors), kept in
    memory as a torch Dataset would be."""
    if not isinstance(table, pd.DataFrame):
        raise HonedError(f"expected a pandas DataFrame, not {type(table).__name__}")
    _require_columns(table, [path_column], Path(name))
    if not is_image_column(table[path_column]):
        return _from_rows(table.reset_index(drop=True), where=name, base=Path.cwd(), task=task,
                          path_column=path_column, label_column=label_column, target_columns=target_columns,
                          min_classes=min_classes)
    ids = [f"{name}/{i}" for i in range(len(table))]
    rows = table.drop(columns=[path_column]).assign(**{path_column: ids}).reset_index(drop=True)
    manifest = _from_rows(rows, where=name, base=Path("/"), task=task, path_column=path_column,
                          label_column=label_column, target_columns=target_columns, min_classes=min_classes)
    manifest.frame["origin"], manifest.frame["index"] = name, np.arange(len(table))
    manifest.frame["path"] = ids  # ids, not files: not resolved against any folder
    manifest.datasets = {name: ImageColumn(list(table[path_column]))}
    return manifest


def is_image_column(column: pd.Series) -> bool:
    """Whether a column holds images (PIL images, arrays, tensors) rather than paths."""
    from PIL import Image
    import torch

    kinds = (Image.Image, np.ndarray, torch.Tensor)
    holds = [isinstance(value, kinds) for value in column]
    if any(holds) and not all(holds):
        raise HonedError(f"column {column.name!r} mixes images and other values: give all paths or all images")
    return bool(holds) and all(holds)


class ImageColumn:
    """A column of in-memory images read as a torch Dataset of ``(image, 0)``: what in-memory Manifests hold."""

    def __init__(self, images: list):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], 0


def _from_rows(
    table: pd.DataFrame,
    *,
    where: str,
    base: Path,
    task: str,
    path_column: str,
    label_column: str,
    target_columns: Sequence[str],
    min_classes: int = 2,
) -> Manifest:
    """A manifest table's rows (paths relative to ``base``) -> a Manifest; ``where`` names it in messages."""
    path = Path(where)
    _require_columns(table, [path_column], path)
    if table[path_column].isna().any() or (table[path_column].astype(str).str.strip() == "").any():
        empty = int((table[path_column].isna() | (table[path_column].astype(str).str.strip() == "")).sum())
        raise HonedError(f"{path}: {empty} row(s) have no image path in '{path_column}': fill them in or remove them")
    frame = pd.DataFrame({"path": [str(_resolve(base, str(p))) for p in table[path_column]]})
    frame["split"] = _split_column(table, path)
    if get_task(task).is_classification:
        _require_columns(table, [label_column], path, hint="name it with --label-column")
        if table[label_column].isna().any():
            raise HonedError(f"{path}: {int(table[label_column].isna().sum())} rows have no label in '{label_column}'")
        frame["label"] = table[label_column].astype(str).to_numpy()
        classes = sorted(frame.loc[frame["split"] == "train", "label"].unique())
        _check_classes(frame, classes, where=where, min_classes=min_classes)
        return Manifest(frame=frame, task=task, classes=classes, name=where)
    targets = list(target_columns)
    if not targets:
        raise HonedError("regression needs its target columns: pass --target COLUMN (repeatable)")
    _require_columns(table, targets, path, hint="name them with --target")
    for column in targets:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            bad = table.loc[values.isna(), column].iloc[0]
            raise HonedError(f"{path}: target column '{column}' has non-numeric or empty values (e.g. {bad!r})")
        frame[column] = values.astype("float32").to_numpy()
    return Manifest(frame=frame, task=task, target_columns=targets, name=where)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _split_column(table: pd.DataFrame, path: Path) -> np.ndarray:
    if "split" not in table.columns:
        return np.full(len(table), "train", dtype=object)
    raw = table["split"].astype(str).str.lower()
    mapped = raw.map(SPLIT_ALIASES)
    if mapped.isna().any():
        bad = sorted(raw[mapped.isna()].unique())[:5]
        raise HonedError(f"{path}: unknown values {bad} in column 'split': use train, val or test")
    return mapped.to_numpy(dtype=object)


def _require_columns(table: pd.DataFrame, columns: Sequence[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        extra = f" ({hint})" if hint else ""
        raise HonedError(f"{path} has no column {', '.join(map(repr, missing))}{extra}; "
                         f"its columns are: {', '.join(map(str, table.columns))}")


def _check_classes(frame: pd.DataFrame, classes: list[str], where: str, min_classes: int = 2) -> None:
    if len(classes) < min_classes:
        raise HonedError(f"{where}: found {len(classes)} class(es) in the training data {classes}; "
                         "classification needs at least 2")
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise HonedError(f"{where}: labels {unknown[:5]} appear in val/test but not in train: add training "
                         "images for them or remove those rows")


# --- torchvision datasets and the user's own Dataset -------------------------------------------------


def from_torchvision(name: str, root: str) -> Manifest:
    """A torchvision dataset whose files are already on disk (``download=False``; nothing is fetched)."""
    import torchvision.datasets as tvd

    dataset_type = getattr(tvd, name, None)
    if not isinstance(dataset_type, type):
        known = [n for n in dir(tvd) if n[0].isupper() and n not in ("VisionDataset", "DatasetFolder", "ImageFolder")]
        raise HonedError(f"torchvision has no dataset {name!r}; known: {', '.join(known[:30])}, ...")
    splits = {}
    for split in ("train", "test"):
        try:
            splits[split] = _open_torchvision(dataset_type, root, split)
        except (RuntimeError, FileNotFoundError, OSError) as error:
            if split == "test":
                continue
            raise HonedError(f"{name} files not found under {root} ({error}); honed never downloads: "
                             f"fetch them once with torchvision.datasets.{name}(root, download=True)") from None
    return from_datasets(splits, name=name)


def _open_torchvision(dataset_type, root: str, split: str):
    params = inspect.signature(dataset_type).parameters
    if "train" in params:
        return dataset_type(root, train=(split == "train"), download=False)
    if "split" in params:
        return dataset_type(root, split=split, download=False)
    if split == "train":
        return dataset_type(root)
    raise FileNotFoundError("no test split")


def from_datasets(datasets: dict, *, classes: Sequence[str] | None = None, name: str = "dataset",
                  min_classes: int = 2) -> Manifest:
    """The user's own ``torch.utils.data.Dataset`` objects, keyed by split (``train`` required), each
    returning ``(image, class_index)`` with the image a PIL image or a [C,H,W] tensor."""
    if "train" not in datasets:
        raise HonedError("from_datasets needs a 'train' dataset")
    classes = list(classes or getattr(datasets["train"], "classes", []) or [])
    rows = []
    for split, dataset in datasets.items():
        if split not in ("train", "val", "test"):
            raise HonedError(f"unknown split {split!r}: use train, val or test")
        targets = _dataset_targets(dataset)
        if not classes:
            classes = [str(c) for c in sorted(set(int(t) for t in targets))]
        for index, target in enumerate(targets):
            rows.append((f"{name}/{split}/{index}", classes[int(target)], split, split, index))
    frame = pd.DataFrame(rows, columns=["path", "label", "split", "origin", "index"])
    _check_classes(frame, sorted(frame.loc[frame["split"] == "train", "label"].unique()), where=name,
                   min_classes=min_classes)
    return Manifest(frame=frame, task="classify", classes=list(classes), name=name, datasets=dict(datasets))


def _dataset_targets(dataset) -> list[int]:
    for attribute in ("targets", "labels"):
        values = getattr(dataset, attribute, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in values]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # slow path: reads every sample once
