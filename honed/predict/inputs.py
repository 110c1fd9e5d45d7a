"""What can be predicted: image files, folders of them, CSV files of paths, PIL images or tensors; and the
dataset that decodes them in loader workers, an undecodable file becoming a row with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch.utils.data import Dataset

from honed.data.decode import DecodeError, decode_to_tensor, image_to_tensor
from honed.data.sources import IMAGE_SUFFIXES
from honed.errors import HonedError


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


class PredictDataset(Dataset):
    """Decodes inputs in workers; an undecodable file becomes a row with its reason, not a crash."""

    def __init__(self, items: list, image_size: int):
        self.items = items
        self.image_size = image_size
        self.from_files = all(isinstance(i, (str, Path)) for i in items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            if isinstance(item, (str, Path)):
                return decode_to_tensor(str(item), self.image_size, reject_placeholders=False), ""
            return image_to_tensor(item, self.image_size), ""
        except DecodeError as error:
            return torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), error.reason
