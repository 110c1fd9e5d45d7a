"""Run configuration: one dataclass per concern, validated when built, round-tripping through YAML.

CLI options map one to one onto these fields; every field has its default here and nowhere else. Names
(optimizer, schedule, precision, loggers, augmentations, strategies, heads) are checked against the
registries of the modules that own them, so adding one there is all it takes.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
import re
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from honed.augment import parse_policy
from honed.data.config import DataConfig, PreprocessConfig
from honed.errors import HonedError
from honed.models.config import ModelConfig
from honed.optim import OPTIMIZERS, SCHEDULES
from honed.registry import Registry
from honed.runtime import PRECISIONS
from honed.tracking.loggers import LOGGERS
from honed.tasks import get_task, metric_task



def _check_name(flag: str, value: object, registry: Registry) -> None:
    """``--optimizer must be one of adamw, sgd, not 'x'``: the flag first, the registry's names in its order,
    then close names when the value looks like a typo."""
    if value not in registry:
        close = registry.suggest(value)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise HonedError(f"{flag} must be one of {', '.join(registry.names())}, not {value!r}{hint}")


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adamw"  # honed.optim.OPTIMIZERS: adamw | sgd (momentum 0.9, nesterov)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # baseline: no added regularization; not applied to norms and biases
    schedule: str = "cosine"  # honed.optim.SCHEDULES: cosine (with warmup) | onecycle | constant | cyclic (cosine restarts, snapshots)
    cycles: int = 0  # cyclic only: restarts, a snapshot saved at each cycle end; 0: largest divisor of epochs <= 5
    warmup_epochs: float = 0.5  # linear warmup before cosine decay
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    precision: str = "auto"  # honed.runtime.PRECISIONS; auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = True  # memory format on CUDA (ignored on CPU, where it is slower)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = -1  # DataLoader workers; -1: from the CPU count
    metric: str = ""  # main metric; empty: accuracy (classify) or mae (regress)
    augment: str = ""  # training augmentation policy, e.g. "hflip,rotate:15,color:0.3@0.5"; empty: none
    label_smoothing: float = 0.0  # classification only
    patience: int = 0  # early stopping: epochs without improvement of the main metric; 0: off
    cache: str = "auto"  # decoded-image cache: auto (when it fits CACHE_AUTO_LIMIT_BYTES), on, off
    feature_cache: str = "auto"  # head strategy: auto trains the head on features computed once when nothing
    # in front of it changes (honed.training.frozen_head); off: the backbone runs every epoch
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
        _check_name("--optimizer", self.optimizer, OPTIMIZERS)
        _check_name("--schedule", self.schedule, SCHEDULES)
        if self.cycles < 0 or (self.cycles and self.epochs % self.cycles):
            raise HonedError(f"--cycles must divide --epochs (each cycle is whole epochs), not {self.cycles} "
                             f"for {self.epochs} epochs; 0 picks one")
        _check_name("--precision", self.precision, PRECISIONS)
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise HonedError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.cache not in ("auto", "on", "off"):
            raise HonedError(f"--cache must be auto, on or off, not {self.cache!r}")
        if self.feature_cache not in ("auto", "off"):
            raise HonedError(f"feature_cache must be auto or off, not {self.feature_cache!r}")
        if self.checkpoint_every < 0:
            raise HonedError(f"--checkpoint-every must be 0 (epoch ends only) or a number of steps, "
                             f"not {self.checkpoint_every}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise HonedError(f"--label-smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.patience < 0:
            raise HonedError(f"--patience must be 0 (off) or more, not {self.patience}")
        for name in self.log:
            _check_name("--log", name, LOGGERS)
        self.log = list(dict.fromkeys(self.log))  # each integration once, in the order given
        if not 0.0 <= self.swa_start < 1.0:
            raise HonedError(f"--swa-start must be a fraction of the epochs in [0, 1), not {self.swa_start}")
        if self.swa_lr < 0:
            raise HonedError(f"--swa-lr must be positive (or 0: keep the schedule), not {self.swa_lr}")
        if self.augment:
            self.augment = str(parse_policy(self.augment))  # validated and normalized
        if self.metric:
            metric_task(self.metric)  # an unknown metric: the one-line error listing every task's metrics


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
        task = get_task(self.data.task)
        if self.train.metric:
            if self.train.metric not in task.metrics:
                raise HonedError(f"--metric {self.train.metric} does not fit --task {task.name}: use "
                                 f"{', '.join(task.metrics)}")
            return self.train.metric
        return task.default_metric

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
        return cls.from_dict(read_mapping(path, missing="is this a honed run folder?"))


def read_mapping(path: str | Path, *, missing: str = "check the path") -> dict[str, Any]:
    """The mapping a YAML (or JSON) config file holds; HonedError when it is absent, malformed or not a mapping."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise HonedError(f"no config at {path}: {missing}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise HonedError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise HonedError(f"{path} does not hold a honed config (expected a mapping)")
    return raw


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


# --- option names ------------------------------------------------------------------------------------
# The CLI's option names in snake case, as ``honed train`` flags, the estimators' keyword arguments
# (honed.estimator) and the overrides of a --config file use them, and the RunConfig field each one sets.
OPTION_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "name": ("name",), "workspace": ("workspace",),
    "data": ("data", "source"), "task": ("data", "task"), "path_column": ("data", "path_column"),
    "label_column": ("data", "label_column"), "target": ("data", "target_columns"),
    "root": ("data", "torchvision_root"), "val_fraction": ("data", "val_fraction"), "folds": ("data", "folds"),
    "strict": ("data", "strict"),
    "model": ("model", "name"), "pretrained": ("model", "pretrained"), "weights": ("model", "weights"),
    "strategy": ("model", "strategy"), "unfreeze": ("model", "unfreeze"), "head_model": ("model", "head_model"),
    "dropout": ("model", "drop_rate"), "head_bn": ("model", "head_bn"), "drop_path": ("model", "drop_path"),
    "image_size": ("preprocess", "image_size"),
    **{name: ("train", name) for name in (
        "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "cycles", "grad_clip", "precision",
        "device", "workers", "metric", "seed", "augment", "label_smoothing", "patience", "cache",
        "checkpoint_every", "deterministic", "swa", "swa_start", "swa_lr", "log")},
})


def with_options(raw: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config mapping ``raw`` (as ``RunConfig.to_dict`` or a YAML file holds it) with each option
    (a name of ``OPTION_FIELDS``) set in its place; build it with ``RunConfig.from_dict``, which validates."""
    merged = copy.deepcopy(dict(raw))
    for option, value in options.items():
        if option not in OPTION_FIELDS:
            raise HonedError(f"unknown option {option!r}: valid options are {', '.join(OPTION_FIELDS)}")
        *sections, key = OPTION_FIELDS[option]
        node = merged
        for section in sections:
            if node.get(section) is None:  # absent, or an empty section in a YAML file
                node[section] = {}
            elif not isinstance(node[section], dict):
                raise HonedError(f"config section {section!r} must be a mapping")
            node = node[section]
        node[key] = list(value) if isinstance(value, tuple) else value
    return merged


def config_options(config: RunConfig) -> dict[str, Any]:
    """Every option's value in ``config``: the inverse of ``with_options``."""
    raw = config.to_dict()
    options = {}
    for option, path in OPTION_FIELDS.items():
        value = raw
        for key in path:
            value = value[key]
        options[option] = value
    return options
