"""torch Datasets that yield fixed-size uint8 images and their targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from honed.data.manifest import Manifest
from honed.data.decode import decode_to_tensor, image_to_tensor


class ImageDataset(Dataset):
    """Rows of a Manifest frame -> ``(uint8 [3, S, S], target)``.

    Files are decoded with honed's one decoding path; rows of in-memory sources are read from the
    user's Dataset. Only the deterministic preprocessing happens here: augmentation is done per batch."""

    def __init__(self, frame: pd.DataFrame, targets: np.ndarray, image_size: int, *,
                 datasets: dict | None = None, max_pixels: int | None = None):
        self.paths = frame["path"].tolist()
        self.origins = frame["origin"].tolist() if "origin" in frame else None
        self.indices = frame["index"].tolist() if "index" in frame else None
        self.targets = targets
        self.image_size = image_size
        self.datasets = datasets or {}
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.load_image(i), torch.tensor(self.targets[i])

    def load_image(self, i: int) -> torch.Tensor:
        if self.datasets:
            image = self.datasets[self.origins[i]][int(self.indices[i])][0]
            return image_to_tensor(image, self.image_size)
        kwargs = {"max_pixels": self.max_pixels} if self.max_pixels else {}
        return decode_to_tensor(self.paths[i], self.image_size, **kwargs)


def split_dataset(manifest: Manifest, split: str, image_size: int) -> ImageDataset:
    frame = manifest.split(split)
    return ImageDataset(frame, manifest.targets(frame), image_size, datasets=manifest.datasets)
