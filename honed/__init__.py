"""honed: the deep-learning practice for image models, as software.

High level, in scikit-learn's shape::

    import honed
    clf = honed.ImageClassifier(epochs=10).fit("data/")     # or ImageRegressor(target="age")
    clf.predict(["cat.jpg"]), clf.evaluate("data/test")
    best = honed.workflow("data/", budget="20m").estimator  # the whole practice, its best model

With the configs themselves::

    result = honed.train(honed.RunConfig(name="baseline", data=honed.DataConfig(source="data/")))
    honed.load(result.run_dir).predict(["cat.jpg"], top_k=3)
"""

import importlib

from honed.client import Client
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.errors import HonedError
from honed.version import __version__  # noqa: F401 - honed.__version__

__all__ = ["Client", "DataConfig", "HonedError", "ImageClassifier", "ImageRegressor", "ModelConfig",
           "PreprocessConfig", "RunConfig", "TrainConfig", "build_report", "find_label_issues", "from_datasets", "load",
           "train", "tune", "workflow"]

# Imported on first use (PEP 562), so that `import honed` does not load training: name -> its module.
_LAZY = {"ImageClassifier": "honed.estimator", "ImageRegressor": "honed.estimator"}


def __getattr__(name: str):
    if name == "workflow":  # the subpackage, callable (honed/workflow/__init__.py); importing it sets the name
        return importlib.import_module("honed.workflow")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'honed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def train(config, **kwargs):
    """Train one run (``strategy: auto`` decided by the advisor first); see :func:`honed.training.fit.train`.
    The given config is unchanged: the one the run settled is ``result.config``."""
    from honed.advise.auto import train as _train

    return _train(config, **kwargs)


def tune(base, **kwargs):
    """A hyperparameter search whose trials are runs, in an Optuna study; see :func:`honed.search.tune`."""
    from honed.search import tune as _tune

    return _tune(base, **kwargs)


def load(path, **kwargs):
    """A Predictor for a run folder or an exported bundle (folder or .zip); see :func:`honed.predict.load`."""
    from honed.predict import load as _load

    return _load(path, **kwargs)


def build_report(target, out, **kwargs):
    """One self-contained HTML report of a run or a workspace; see :func:`honed.report.build_report`."""
    from honed.report import build_report as _build_report

    return _build_report(target, out, **kwargs)


def from_datasets(datasets, **kwargs):
    """A Manifest from your own torch Datasets; see :func:`honed.data.sources.from_datasets`."""
    from honed.data.sources import from_datasets as _from_datasets

    return _from_datasets(datasets, **kwargs)


def find_label_issues(data, **kwargs):
    """Training images whose label is probably wrong, ranked (cleanlab); ``data`` is a folder, a manifest file or a
    Manifest; see :func:`honed.analyze.label_issues.find_label_issues`."""
    from honed.analyze.label_issues import find_label_issues as _find_label_issues

    return _find_label_issues(data, **kwargs)
