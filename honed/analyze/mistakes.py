"""The model's mistakes, read from a run's validation predictions: the worst predictions, the confusion
matrix and its most confused pairs, per-class precision/recall/F1, and for regression the largest residuals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from honed.tasks import get_task


def worst_predictions(predictions: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` highest-loss rows, worst first (ties keep file order)."""
    return predictions.sort_values("loss", ascending=False, kind="stable").head(k).reset_index(drop=True)


def confusion(predictions: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Counts ``[true, predicted]`` in the order of ``classes``."""
    return confusion_matrix(predictions["target"], predictions["prediction"], labels=classes)


def confused_pairs(matrix: np.ndarray, classes: list[str], k: int = 10) -> list[dict]:
    """The ``k`` largest off-diagonal cells: which true class is taken for which, how often."""
    support = matrix.sum(axis=1)
    cells = [(int(matrix[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes))
             if i != j and matrix[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": classes[i], "predicted": classes[j], "count": count,
             "share_of_true": count / max(int(support[i]), 1)} for count, i, j in cells[:k]]


def per_class(predictions: pd.DataFrame, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class (sklearn), worst F1 first."""
    precision, recall, f1, support = precision_recall_fscore_support(
        predictions["target"], predictions["prediction"], labels=classes, zero_division=0)
    rows = [{"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)]
    return sorted(rows, key=lambda row: (row["f1"], row["class"]))


def largest_residuals(predictions: pd.DataFrame, target_columns: list[str], k: int) -> list[dict]:
    """Regression: the ``k`` images with the largest absolute error (mean over targets), with their values."""
    errors = np.column_stack([(predictions[f"prediction:{t}"] - predictions[f"target:{t}"]).to_numpy()
                              for t in target_columns])
    order = np.argsort(-np.abs(errors).mean(axis=1), kind="stable")[:k]
    return [{"path": predictions["path"].iloc[i],
             **{f"target:{t}": float(predictions[f"target:{t}"].iloc[i]) for t in target_columns},
             **{f"prediction:{t}": float(predictions[f"prediction:{t}"].iloc[i]) for t in target_columns},
             "abs_error": float(np.abs(errors[i]).mean())} for i in order]


def error_report(predictions: pd.DataFrame, *, task: str, classes: list[str], target_columns: list[str],
                 k: int = 16) -> dict:
    """Everything above as one JSON-ready dict."""
    if get_task(task).is_classification:  # a confusion matrix and per-class report; regression: residuals
        matrix = confusion(predictions, classes)
        worst = worst_predictions(predictions, k)
        doubtful = label_issues(predictions, classes)
        flagged = {row["path"] for row in doubtful}
        return {
            "worst": [{"path": r.path, "target": r.target, "prediction": r.prediction,
                       "confidence": float(r.confidence), "loss": float(r.loss),
                       "doubtful_label": r.path in flagged} for r in worst.itertuples()],
            "confusion": {"classes": classes, "matrix": matrix.tolist(),
                          "pairs": confused_pairs(matrix, classes)},
            "per_class": per_class(predictions, classes),
            "label_issues": doubtful,
        }
    return {"residuals": largest_residuals(predictions, target_columns, k)}


def label_issues(predictions: pd.DataFrame, classes: list[str]) -> list[dict]:
    """The validation images whose label is doubtful, by cleanlab on the run's own predictions (out of sample for
    them): a high-loss image among these is a labelling question, not a weakness to augment for. Ranked most
    likely wrong first; empty when the validation set is too small to judge (a class under 2 images)."""
    from honed.analyze.label_issues import OutOfSample, rank_label_issues

    columns = [f"p:{c}" for c in classes]
    counts = predictions["target"].value_counts()
    if len(predictions) == 0 or not set(columns) <= set(predictions.columns) or len(counts) < 2 or counts.min() < 2:
        return []
    index = {c: i for i, c in enumerate(classes)}
    probs = predictions[columns].to_numpy(dtype=float)
    oos = OutOfSample(predictions["path"].astype(str).tolist(), predictions["target"].map(index).to_numpy(dtype=int),
                      probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None), list(classes),
                      "the run's validation predictions")
    return [{k: row[k] for k in ("path", "given", "suggested", "score")} for row in rank_label_issues(oos).rows]
