"""Run configuration: one dataclass per concern, validated when built, round-tripping through YAML.

CLI options map one to one onto these fields; every field has its default here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
import re
from typing import Any

import yaml

from honed.errors import HonedError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant", "cyclic")
PRECISIONS = ("auto", "32", "bf16", "16")
CLASSIFY_METRICS = ("accuracy", "macro_f1", "log_loss")
REGRESS_METRICS = ("mae", "rmse")
HEAD_MODELS = ("", "logreg", "svm", "gbm", "ridge", "svr")  # probe heads; "" picks logreg or ridge by task
LOGGERS = ("tensorboard", "mlflow")  # --log integrations (honed.tracking.loggers)


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
    strict: bool = False  # any undecodable image is an error instead of a skipped, listed file
    skipped_files: int = 0  # filled in at training: undecodable images left out (listed in bad_files.csv)

    def __post_init__(self) -> None:
        if self.task not in ("classify", "regress"):
            raise HonedError(f"--task must be classify or regress, not {self.task!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise HonedError(f"--val-fraction must be between 0 and 1, not {self.val_fraction}")
        if self.folds < 1 or not 0 <= self.fold < max(self.folds, 1):
            raise HonedError(f"--folds must be >= 1 and the fold in [0, folds), not folds={self.folds} fold={self.fold}")


@dataclass
class ModelConfig:
    name: str = "resnet18"  # any timm model name, or a torchvision one
    pretrained: bool = False  # ImageNet weights: pip-shipped when honed knows them, else timm's hub
    weights: str = ""  # a local safetensors / PyTorch state dict to start from
    strategy: str = "full"  # a transfer strategy (honed.models.strategies: probe, head, partial, gradual, full,
    # scratch) or auto: the advisor picks one from the data (honed.advise), recorded in the run
    drop_rate: float = 0.0  # dropout before the classifier (timm's drop_rate)
    head_bn: bool = False  # head as BatchNorm1d(features) -> Dropout(drop_rate) -> Linear (honed.models.factory)
    drop_path: float = 0.0  # stochastic depth (timm's drop_path_rate); timm models that have it only
    unfreeze: int = 0  # partial / gradual: stages fine-tuned, counted from the head; 0: partial 2, gradual all
    head_model: str = ""  # probe: logreg | svm | gbm (classify), ridge | svr | gbm (regress); empty: logreg / ridge
    gbm_rounds: int = 0  # probe with a gbm head: boosting iterations; 0: honed.training.probe.GBM_ROUNDS

    def __post_init__(self) -> None:
        from honed.models.strategies import list_strategies  # the registry is the one list of strategies

        if self.strategy not in list_strategies() + ["auto"]:
            raise HonedError(f"--strategy must be one of {', '.join(list_strategies() + ['auto'])}, "
                             f"not {self.strategy!r}")
        if self.unfreeze < 0:
            raise HonedError(f"--unfreeze must be 0 (the strategy's default) or a number of stages, "
                             f"not {self.unfreeze}")
        if self.head_model not in HEAD_MODELS:
            raise HonedError(f"--head-model must be one of {', '.join(m for m in HEAD_MODELS if m)}, "
                             f"not {self.head_model!r}")
        if self.gbm_rounds < 0:
            raise HonedError(f"--rounds of a gbm head must be at least 1 (or 0: the default), not {self.gbm_rounds}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise HonedError(f"--dropout must be in [0, 1), not {self.drop_rate}")
        if not 0.0 <= self.drop_path < 1.0:
            raise HonedError(f"--drop-path must be in [0, 1), not {self.drop_path}")


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


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd (momentum 0.9, nesterov)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # baseline: no added regularization; not applied to norms and biases
    schedule: str = "cosine"  # cosine (with warmup) | onecycle | constant | cyclic (cosine restarts, snapshots)
    cycles: int = 0  # cyclic only: restarts, a snapshot saved at each cycle end; 0: largest divisor of epochs <= 5
    warmup_epochs: float = 0.5  # linear warmup before cosine decay
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = True  # memory format on CUDA (ignored on CPU, where it is slower)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = -1  # DataLoader workers; -1: from the CPU count
    metric: str = ""  # main metric; empty: accuracy (classify) or mae (regress)
    augment: str = ""  # training augmentation policy, e.g. "hflip,rotate:15,color:0.3@0.5"; empty: none
    label_smoothing: float = 0.0  # classification only
    patience: int = 0  # early stopping: epochs without improvement of the main metric; 0: off
    cache: str = "auto"  # decoded-image cache: auto (when it fits CACHE_AUTO_LIMIT_BYTES), on, off
    log: list[str] = field(default_factory=list)  # also log to: tensorboard, mlflow (pip install honed[log])
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints a killed run resumes from; 0: epoch ends only
    deterministic: bool = False  # torch deterministic algorithms: bit-identical reruns and resumes (slower on GPU)
    swa: bool = False  # stochastic weight averaging of the epoch-end weights (honed.training.swa)
    swa_start: float = 0.75  # fraction of the epochs done before averaging starts
    swa_lr: float = 0.0  # constant learning rate from the first averaged epoch on; 0: the schedule's own

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise HonedError(f"--epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 2:  # BatchNorm cannot train on one image per batch
            raise HonedError(f"--batch-size must be at least 2 (BatchNorm layers need two or more images per "
                             f"batch), not {self.batch_size}")
        if not self.lr > 0 or self.lr == float("inf"):  # also refuses NaN
            raise HonedError(f"--lr must be a positive number, not {self.lr}")
        for flag, value in (("--weight-decay", self.weight_decay), ("--grad-clip", self.grad_clip)):
            if not 0 <= value < float("inf"):  # also refuses NaN
                raise HonedError(f"{flag} must be a number >= 0, not {value}")
        if self.optimizer not in OPTIMIZERS:
            raise HonedError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise HonedError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.cycles < 0 or (self.cycles and self.epochs % self.cycles):
            raise HonedError(f"--cycles must divide --epochs (each cycle is whole epochs), not {self.cycles} "
                             f"for {self.epochs} epochs; 0 picks one")
        if self.precision not in PRECISIONS:
            raise HonedError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise HonedError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.cache not in ("auto", "on", "off"):
            raise HonedError(f"--cache must be auto, on or off, not {self.cache!r}")
        if self.checkpoint_every < 0:
            raise HonedError(f"--checkpoint-every must be 0 (epoch ends only) or a number of steps, "
                             f"not {self.checkpoint_every}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise HonedError(f"--label-smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.patience < 0:
            raise HonedError(f"--patience must be 0 (off) or more, not {self.patience}")
        unknown = [name for name in self.log if name not in LOGGERS]
        if unknown:
            raise HonedError(f"--log must be one of {', '.join(LOGGERS)}, not {unknown[0]!r}")
        self.log = list(dict.fromkeys(self.log))  # each integration once, in the order given
        if not 0.0 <= self.swa_start < 1.0:
            raise HonedError(f"--swa-start must be a fraction of the epochs in [0, 1), not {self.swa_start}")
        if self.swa_lr < 0:
            raise HonedError(f"--swa-lr must be positive (or 0: keep the schedule), not {self.swa_lr}")
        if self.augment:
            from honed.augment import parse_policy

            self.augment = str(parse_policy(self.augment))  # validated and normalized
        if self.metric and self.metric not in CLASSIFY_METRICS + REGRESS_METRICS:
            raise HonedError(
                f"--metric {self.metric!r} is unknown: use one of {', '.join(CLASSIFY_METRICS + REGRESS_METRICS)}"
            )


@dataclass
class RunConfig:
    name: str = "run"
    workspace: str = "honed-runs"
    parent: str = ""  # the run this one was derived from
    change: str = ""  # what changed from the parent, in words
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def main_metric(self) -> str:
        if self.train.metric:
            allowed = CLASSIFY_METRICS if self.data.task == "classify" else REGRESS_METRICS
            if self.train.metric not in allowed:
                raise HonedError(f"--metric {self.train.metric} does not fit --task {self.data.task}: use {', '.join(allowed)}")
            return self.train.metric
        return "accuracy" if self.data.task == "classify" else "mae"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "preprocess": PreprocessConfig, "train": TrainConfig}
        kwargs = {}
        for key, value in raw.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value or {}, key)
            elif key in {f.name for f in fields(cls)}:
                kwargs[key] = value
            else:
                raise HonedError(f"unknown config key {key!r}: valid keys are {', '.join(f.name for f in fields(cls))}")
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: Path) -> "RunConfig":
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise HonedError(f"no config at {path}: is this a honed run folder?") from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise HonedError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise HonedError(f"{path} does not hold a honed config (expected a mapping)")
        return cls.from_dict(raw)


def _build(section_type, values: dict, section: str):
    if not isinstance(values, dict):
        raise HonedError(f"config section {section!r} must be a mapping")
    known = {f.name for f in fields(section_type)}
    unknown = set(values) - known
    if unknown:
        raise HonedError(f"unknown key(s) {sorted(unknown)} in config section {section!r}: valid keys are {sorted(known)}")
    try:
        return section_type(**values)
    except TypeError as error:
        raise HonedError(f"bad value in config section {section!r}: {error}") from None
