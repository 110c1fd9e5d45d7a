"""How large the run's original images are, read from file headers (no pixels decoded).

The size decides which crop augmentation fits the data: the reflect-pad random crop of the CIFAR recipe
(pad 4 px, crop back to 32 px) moves small images by a few pixels and loses nothing, while photos of
ordinary size are trained with random resized crops, as ImageNet training does (torchvision's
references/classification presets: RandomResizedCrop, then flips and TrivialAugmentWide).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from honed.data.decode import DecodeError, probe_image

SMALL_SIDE = 64  # px: a median shorter side up to this is "small images" (CIFAR 32, Tiny ImageNet 64)


@dataclass(frozen=True)
class ImageSizes:
    """The typical original image of a run's data: the median of each side over the images read."""

    median_side: float  # shorter side, pixels
    median_width: float
    median_height: float
    images: int  # how many file headers were read

    @property
    def small(self) -> bool:
        return self.median_side <= SMALL_SIDE

    def describe(self) -> str:
        """In words, with the measure: "photos with median side 375 px (500 x 375)"."""
        kind = "small images" if self.small else "photos"
        return (f"{kind} with median side {self.median_side:.0f} px "
                f"({self.median_width:.0f} x {self.median_height:.0f}, {self.images} images)")

    def to_dict(self) -> dict:
        return {**asdict(self), "small": self.small}


def read_sizes(paths: Sequence[str]) -> np.ndarray | None:
    """``[N, 2]`` (width, height) of each image from its header; None when a header cannot be read."""
    try:
        infos = [probe_image(p) for p in paths]
    except (DecodeError, OSError):
        return None
    return np.array([(info.width, info.height) for info in infos], dtype=float).reshape(-1, 2)


def measure_sizes(paths: Sequence[str]) -> ImageSizes | None:
    """The median original size of the images at ``paths``; None when there are none or a header is unreadable."""
    sizes = read_sizes(paths)
    if sizes is None or not len(sizes):
        return None
    width, height = np.median(sizes, axis=0)
    return ImageSizes(median_side=float(np.median(sizes.min(axis=1))), median_width=float(width),
                      median_height=float(height), images=len(sizes))
