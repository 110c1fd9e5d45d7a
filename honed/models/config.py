"""The model's section of a run's config: which network, which weights, which transfer strategy and head,
validated against the registries that own those names."""

from __future__ import annotations

from dataclasses import dataclass

from honed.errors import HonedError
from honed.models.heads import HEADS
from honed.models.strategies import STRATEGIES


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
    gbm_rounds: int = 0  # probe with a gbm head: boosting iterations; 0: honed.models.heads.gbm.GBM_ROUNDS

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES and self.strategy != "auto":
            raise HonedError(f"--strategy must be one of {', '.join(sorted(STRATEGIES.names()) + ['auto'])}, "
                             f"not {self.strategy!r}")
        if self.unfreeze < 0:
            raise HonedError(f"--unfreeze must be 0 (the strategy's default) or a number of stages, "
                             f"not {self.unfreeze}")
        if self.head_model and self.head_model not in HEADS:  # "" picks the task's default head
            raise HonedError(f"--head-model must be one of {', '.join(HEADS.names())}, not {self.head_model!r}")
        if self.gbm_rounds < 0:
            raise HonedError(f"--rounds of a gbm head must be at least 1 (or 0: the default), not {self.gbm_rounds}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise HonedError(f"--dropout must be in [0, 1), not {self.drop_rate}")
        if not 0.0 <= self.drop_path < 1.0:
            raise HonedError(f"--drop-path must be in [0, 1), not {self.drop_path}")
