"""Hyperparameter search over honed runs with Optuna: ``tune(base, trials=20, timeout_s=None)``."""

from honed.search.space import SearchSpace
from honed.search.tune import TuneResult, default_storage, tune

__all__ = ["SearchSpace", "TuneResult", "default_storage", "tune"]
