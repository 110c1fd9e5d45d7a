"""What a hyperparameter search varies: a dataclass of ranges, each drawn by an Optuna trial."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from honed.config import RunConfig
from honed.errors import HonedError


@dataclass(frozen=True)
class SearchSpace:
    """Ranges to draw from; a dimension set to None keeps the base run's value. Every worker joining one
    study must use the same space (Optuna refuses a parameter whose range changed)."""

    lr: tuple[float, float] | None = (1e-4, 1e-2)  # peak learning rate, drawn log-uniformly
    epochs: tuple[int, int] | None = (3, 10)  # inclusive
    batch_size: tuple[int, ...] | None = (32, 64, 128)  # choices
    drop_rate: tuple[float, float] | None = (0.0, 0.5)  # dropout before the classifier, uniform

    def __post_init__(self) -> None:
        if self.lr is not None and not 0 < self.lr[0] <= self.lr[1]:
            raise HonedError(f"the learning-rate range must be 0 < low <= high, not {self.lr}")
        if self.epochs is not None and not 1 <= self.epochs[0] <= self.epochs[1]:
            raise HonedError(f"the epochs range must be 1 <= low <= high, not {self.epochs}")
        if self.batch_size is not None and (not self.batch_size or min(self.batch_size) < 1):
            raise HonedError(f"batch-size choices must be positive integers, not {self.batch_size}")
        if self.drop_rate is not None and not 0.0 <= self.drop_rate[0] <= self.drop_rate[1] < 1.0:
            raise HonedError(f"the dropout range must be 0 <= low <= high < 1, not {self.drop_rate}")

    def suggest(self, trial) -> dict[str, Any]:
        """Draw this trial's values (``trial``: an ``optuna.Trial``), named as RunConfig fields."""
        params: dict[str, Any] = {}
        if self.lr is not None:
            params["lr"] = trial.suggest_float("lr", *self.lr, log=True)
        if self.epochs is not None:
            params["epochs"] = trial.suggest_int("epochs", *self.epochs)
        if self.batch_size is not None:
            params["batch_size"] = trial.suggest_categorical("batch_size", list(self.batch_size))
        if self.drop_rate is not None:
            params["drop_rate"] = trial.suggest_float("drop_rate", *self.drop_rate)
        return params


def apply_params(base: RunConfig, params: dict[str, Any], *, name: str, study: str, number: int) -> RunConfig:
    """The trial's run: the base config with the drawn values, its own name, and the change in words."""
    config = copy.deepcopy(base)
    config.name, config.parent = name, base.parent
    for key, value in params.items():
        section = config.model if key == "drop_rate" else config.train
        setattr(section, key, value)
    drawn = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    config.change = f"tune: {drawn} (study {study}, trial {number})"
    return config
