"""``honed.workflow(data, budget=...)``: the package is callable and still a package, the call runs the
workflow with the command's options and returns its exported model as a fitted estimator."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import honed
from honed.errors import HonedError
from honed.estimator import ImageClassifier


def test_honed_workflow_is_callable_and_still_the_package():
    import honed.workflow
    from honed.workflow import WorkflowSpec, run_workflow  # noqa: F401 - the package's names still import

    assert callable(honed.workflow) and honed.workflow.run_workflow is run_workflow
    assert honed.ImageClassifier is ImageClassifier


def test_its_defaults_are_the_commands():
    from honed.cli.workflow_cmd import workflow as command
    from honed.workflow.api import workflow

    options = {name: p.default.default for name, p in inspect.signature(command).parameters.items()
               if hasattr(p.default, "default")}
    for name, parameter in inspect.signature(workflow).parameters.items():
        if name in ("data", "reporter"):
            continue
        expected = options[name]
        expected = str(expected) if name == "workspace" else expected
        assert (list(parameter.default) if name == "target" else parameter.default) == \
            (list(expected) if name == "target" else expected), name


def test_a_tiny_workflow_returns_its_best_model_as_an_estimator(cifar_mini, tmp_path, one_thread):
    result = honed.workflow(str(cifar_mini), budget="10m", name="wf", workspace=str(tmp_path / "ws"),
                            model="test_resnet", pretrained=False, strategy="full", lr=3e-3, epochs=1,
                            batch_size=32, image_size=16, improve_rounds=0, tune_trials=0, tta="",
                            ensemble_size=0, refit=False, workers=0)
    assert result.state.finished and result.bundle is not None and result.best == "wf-baseline"
    estimator = result.estimator
    assert isinstance(estimator, ImageClassifier) and estimator.bundle_ == result.bundle
    images = sorted(str(p) for p in (cifar_mini / "test").rglob("*.jpg"))[:8]
    expected = honed.load(result.bundle).predict_proba(images, workers=0)
    np.testing.assert_allclose(estimator.predict_proba(images), expected, atol=1e-6)
    assert set(estimator.evaluate(str(cifar_mini / "test"))) == {"accuracy", "macro_f1", "log_loss"}


def test_a_workflow_refuses_images_in_memory(tmp_path):
    import pandas as pd

    with pytest.raises(HonedError, match="path"):
        honed.workflow(pd.DataFrame({"path": [np.zeros((4, 4, 3), np.uint8)] * 2, "label": ["a", "b"]}),
                       workspace=str(tmp_path))
