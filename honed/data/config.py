"""What the data is and how it is split (``DataConfig``), and its deterministic preprocessing
(``PreprocessConfig``): the data's own sections of a run's config, validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field

from honed.errors import HonedError
from honed.tasks import get_task


@dataclass
class DataConfig:
    source: str = ""  # folder, CSV/Parquet manifest, or torchvision dataset name
    task: str = "classify"  # classify | regress
    path_column: str = "path"  # manifest column holding image paths
    label_column: str = "label"  # manifest column holding class names (classification)
    target_columns: list[str] = field(default_factory=list)  # manifest columns of numeric targets (regression)
    torchvision_root: str = ""  # where a torchvision dataset's files already are
    val_fraction: float = 0.2  # stratified holdout when the data has no validation split
    folds: int = 1  # k-fold cross-validation when > 1
    fold: int = 0  # which fold this run validates on
    validation: bool = True  # False: no validation split, train and val pooled for training (a refit)
    strict: bool = False  # any undecodable image is an error instead of a skipped, listed file
    skipped_files: int = 0  # filled in at training: undecodable images left out (listed in bad_files.csv)
    exclude: str = ""  # a file listing training images to leave out (--exclude-label-issues); "" keeps all

    def __post_init__(self) -> None:
        get_task(self.task)  # HonedError: --task must be one of classify, regress
        if not 0.0 < self.val_fraction < 1.0:
            raise HonedError(f"--val-fraction must be between 0 and 1, not {self.val_fraction}")
        if self.folds < 1 or not 0 <= self.fold < max(self.folds, 1):
            raise HonedError(f"--folds must be >= 1 and the fold in [0, folds), not folds={self.folds} fold={self.fold}")
        if not self.validation and self.folds > 1:
            raise HonedError("k-fold cross-validation needs a validation split: drop --folds or keep validation")


@dataclass
class PreprocessConfig:
    """The deterministic part: decode, resize the shorter side, centre crop, normalize. Filled from the model."""

    image_size: int = 0  # 0: from the model's pretrained config
    mean: list[float] = field(default_factory=list)  # empty: from the model's pretrained config
    std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.image_size < 0 or self.image_size > 4096:
            raise HonedError(f"--image-size must be between 8 and 4096, not {self.image_size}")
        if self.image_size and self.image_size < 8:
            raise HonedError(f"--image-size must be between 8 and 4096, not {self.image_size}")
