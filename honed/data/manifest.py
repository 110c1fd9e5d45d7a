"""The Manifest: one table of samples that every data source becomes.

Columns of ``frame``:
- ``path``: the image file (absolute), or for in-memory datasets a descriptive id ``<name>/<split>/<index>``.
- ``split``: ``train``, ``val`` or ``test``.
- ``label``: the class name (str), for classification.
- one float column per target in ``target_columns``, for regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib

import pandas as pd

from honed.errors import HonedError
from honed.tasks import Task, get_task

SPLITS = ("train", "val", "test")


@dataclass
class Manifest:
    frame: pd.DataFrame
    task: str = "classify"
    classes: list[str] = field(default_factory=list)  # sorted class names (classification)
    target_columns: list[str] = field(default_factory=list)  # regression targets
    name: str = ""  # where it came from, for messages and the ledger
    datasets: dict = field(default_factory=dict)  # split -> torch Dataset, for in-memory sources only

    def __post_init__(self) -> None:
        get_task(self.task)  # a HonedError naming the tasks there are
        unknown = set(self.frame["split"]) - set(SPLITS)
        if unknown:
            raise HonedError(f"unknown split names {sorted(unknown)}: use {', '.join(SPLITS)}")

    @property
    def task_type(self) -> Task:
        """The task object (``task`` stays its name, as stored)."""
        return get_task(self.task)

    @property
    def in_memory(self) -> bool:
        return bool(self.datasets)

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name].reset_index(drop=True)

    def has_split(self, name: str) -> bool:
        return bool((self.frame["split"] == name).any())

    def targets(self, frame: pd.DataFrame):
        """Class indices (int64) for classification, float32 targets for regression."""
        if self.task_type.is_classification:  # class names -> indices; regression targets are the columns
            index = {c: i for i, c in enumerate(self.classes)}
            return frame["label"].map(index).to_numpy(dtype="int64")
        return frame[self.target_columns].to_numpy(dtype="float32")

    @property
    def num_outputs(self) -> int:
        return self.task_type.num_outputs(self.classes, self.target_columns)

    def fingerprint(self) -> str:
        """A short hash of the sample list, labels and file sizes/mtimes: changes when the data does."""
        h = hashlib.blake2b(digest_size=8)
        columns = ["path", "split"] + (["label"] if self.task_type.is_classification else self.target_columns)
        h.update(pd.util.hash_pandas_object(self.frame[columns], index=False).values.tobytes())
        if not self.in_memory:
            for stat in _file_stats(self.frame["path"]):
                h.update(stat)
        return h.hexdigest()


def _file_stats(paths):
    import os

    for p in paths:
        try:
            st = os.stat(p)
            yield f"{st.st_size}:{st.st_mtime_ns}".encode()
        except OSError:
            yield b"missing"
