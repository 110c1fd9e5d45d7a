"""The task objects: the behaviour each task owns, checked against what it replaced."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from honed.errors import HonedError
from honed.tasks import CLASSIFY, REGRESS, get_task, metric_task


def test_tasks_by_name_and_refusals():
    assert get_task("classify") is CLASSIFY and get_task("regress") is REGRESS and get_task(CLASSIFY) is CLASSIFY
    with pytest.raises(HonedError, match="--task must be one of classify, regress, not 'segment'"):
        get_task("segment")
    assert metric_task("rmse") is REGRESS and metric_task("macro_f1") is CLASSIFY
    with pytest.raises(HonedError, match="unknown"):
        metric_task("auc")


def test_classification_outputs_loss_and_score():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    targets = torch.tensor([0, 2])
    assert torch.allclose(CLASSIFY.outputs(logits).sum(dim=1), torch.ones(2))
    assert torch.isclose(CLASSIFY.loss(logits, targets), F.cross_entropy(logits, targets))
    smoothed = CLASSIFY.loss(logits, targets, label_smoothing=0.1)
    assert not torch.isclose(smoothed, CLASSIFY.loss(logits, targets))
    scores = CLASSIFY.score(CLASSIFY.outputs(logits).numpy(), targets.numpy())
    assert scores["accuracy"] == 0.5 and scores["loss"] == scores["log_loss"] > 0
    assert CLASSIFY.default_metric == "accuracy" and CLASSIFY.combine_rule == "soft"
    assert CLASSIFY.num_outputs(["a", "b"], []) == 2


def test_regression_outputs_loss_and_score():
    values = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    targets = torch.tensor([[1.0, 2.0], [3.0, 3.0]])
    assert torch.equal(REGRESS.outputs(values), values)
    assert torch.isclose(REGRESS.loss(values, targets), torch.tensor(1.0))  # (0 + 0 + 0 + 4) / 4
    assert REGRESS.loss(values, targets, reduction="none").tolist() == [0.0, 2.0]
    scores = REGRESS.score(values.numpy(), targets.numpy())
    assert scores == pytest.approx({"mae": 0.5, "rmse": 1.0, "loss": 1.0})
    assert REGRESS.default_metric == "mae" and REGRESS.combine_rule == "mean"
    assert REGRESS.num_outputs([], ["age", "height", "weight"]) == 3
    assert np.isfinite(scores["rmse"])


def test_words_the_reports_and_bundles_use():
    assert CLASSIFY.labels_key == "classes" and REGRESS.labels_key == "target_columns"
    assert CLASSIFY.diversity.disagreement == "top-class disagreement" and CLASSIFY.diversity.disagreement_range == (0, 1)
    assert REGRESS.diversity.correlation == "residual correlation"
    assert REGRESS.diversity.disagreement_range == (None, None)
    assert CLASSIFY.output_names(["a", "b"], ["x"]) == ["a", "b"] and REGRESS.output_names(["a"], ["x"]) == ["x"]


def test_failures_per_sample():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert CLASSIFY.failures(probabilities, np.array([0, 1])).tolist() == [0.0, 1.0]
    values, targets = np.array([[1.0, 2.0], [3.0, 3.0]]), np.array([[1.0, 4.0], [3.0, 3.0]])
    assert REGRESS.failures(values, targets).tolist() == [1.0, 0.0]
    assert CLASSIFY.failure_word == "error rate" and REGRESS.failure_word == "mean absolute error"
