"""The diversity report: how much the members disagree, how correlated their errors are, and how far the
ensemble is from what independent members would give.

For classification, a member "errs" on a sample when its top class is wrong. If M members erred
independently with error rates e_1..e_M, a majority vote would be wrong when more than half of them are
wrong: P(K > M/2) with K ~ Poisson-binomial(e_1..e_M) (binomial when the rates are equal: 3 members at
e = 0.01 give 3 e^2 (1 - e) + e^3 = 0.000298). This bound assumes wrong members never split their votes,
so it is what independence would buy at best; the measured majority-vote error next to it shows how far
correlated errors keep the ensemble from it. For regression the "error" is the residual: the report gives
the residual correlation and the mean absolute difference between members' predictions, and no bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from honed.combine.rules import hard_vote
from honed.combine.scoring import score
from honed.tracking.atomic import atomic_path, write_json, write_text
from honed.tasks import get_task

REPORT_JSON = "diversity.json"
REPORT_MD = "diversity.md"
REPORT_PNG = "diversity.png"


def poisson_binomial_pmf(rates: Sequence[float]) -> np.ndarray:
    """P(K = k) for k = 0..M wrong members, each wrong independently with its own rate."""
    pmf = np.array([1.0])
    for e in rates:
        pmf = np.convolve(pmf, [1.0 - float(e), float(e)])
    return pmf


def independent_majority_error(rates: Sequence[float]) -> float:
    """P(more than half of the members are wrong) if they erred independently at ``rates``."""
    pmf = poisson_binomial_pmf(rates)
    return float(pmf[len(rates) // 2 + 1:].sum())


@dataclass
class DiversityReport:
    """Everything the report shows; ``to_dict`` is what diversity.json holds."""

    task: str
    metric: str
    members: list[str]
    member_scores: list[float]  # each member's main metric
    ensemble_score: float  # the ensemble's main metric (cross-fitted for fitted rules)
    member_errors: list[float] | None  # classification: each member's error rate
    ensemble_error: float | None  # classification: 1 - accuracy of the ensemble as combined
    majority_error: float | None  # classification: measured error of a plain majority vote
    independent_error: float | None  # classification: the majority-vote error if members were independent
    disagreement: list[list[float]]  # classify: share of samples whose top classes differ; regress: mean |diff|
    error_correlation: list[list[float]]  # classify: correlation of error indicators; regress: of residuals
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def diversity_report(names: Sequence[str], outputs: np.ndarray, targets: np.ndarray, ensemble_outputs: np.ndarray,
                     *, task: str, metric: str) -> DiversityReport:
    """The report for members' ``[M, N, C]`` outputs and the ensemble's ``[N, C]`` outputs on the same rows."""
    scores = [score(o, targets, task)[metric] for o in outputs]
    ensemble_score = score(ensemble_outputs, targets, task)[metric]
    if get_task(task).is_classification:  # top classes and error indicators; regression compares values
        picks = outputs.argmax(axis=2)
        wrong = picks != np.asarray(targets)[None, :]
        rates = wrong.mean(axis=1)
        disagreement = (picks[:, None, :] != picks[None, :, :]).mean(axis=2)
        majority = hard_vote(outputs).argmax(axis=1)
        return DiversityReport(task, metric, list(names), scores, ensemble_score, rates.tolist(),
                               float((ensemble_outputs.argmax(axis=1) != targets).mean()),
                               float((majority != targets).mean()), independent_majority_error(rates),
                               disagreement.tolist(), _correlation(wrong.astype(float)).tolist(), len(targets))
    y = np.asarray(targets, dtype=np.float64).reshape(outputs.shape[1:])
    residuals = (outputs - y[None]).reshape(outputs.shape[0], -1)
    flat = outputs.reshape(outputs.shape[0], -1)
    disagreement = np.abs(flat[:, None, :] - flat[None, :, :]).mean(axis=2)
    return DiversityReport(task, metric, list(names), scores, ensemble_score, None, None, None, None,
                           disagreement.tolist(), _correlation(residuals).tolist(), len(y))


def _correlation(rows: np.ndarray) -> np.ndarray:
    """Pearson correlation between members' rows; NaN where a member never varies (e.g. never errs)."""
    centered = rows - rows.mean(axis=1, keepdims=True)
    norms = np.sqrt((centered ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (centered @ centered.T) / np.outer(norms, norms)
    corr[np.outer(norms, norms) == 0] = np.nan
    return corr


def _jsonable(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def render_markdown(report: DiversityReport) -> str:
    """The report as a markdown table per member, the ensemble's line, and the matrices."""
    lines = [f"# Diversity on {report.samples} validation samples", "",
             f"| member | {report.metric} |" + (" error |" if report.member_errors else ""),
             "|---|---|" + ("---|" if report.member_errors else "")]
    for i, name in enumerate(report.members):
        error = f" {report.member_errors[i]:.4f} |" if report.member_errors else ""
        lines.append(f"| {name} | {report.member_scores[i]:.4f} |{error}")
    error = f" {report.ensemble_error:.4f} |" if report.ensemble_error is not None else ""
    lines.append(f"| **ensemble** | {report.ensemble_score:.4f} |{error}")
    if report.independent_error is not None:
        lines += ["", "| majority vote | error |", "|---|---|",
                  f"| measured | {report.majority_error:.4f} |",
                  f"| if members erred independently (Poisson-binomial) | {report.independent_error:.6f} |"]
    words = get_task(report.task).diversity
    kind, corr = words.disagreement, words.correlation
    for title, matrix in ((kind, report.disagreement), (corr, report.error_correlation)):
        lines += ["", f"**{title}**", "", "| | " + " | ".join(report.members) + " |",
                  "|---|" + "---|" * len(report.members)]
        lines += [f"| {name} | " + " | ".join(_cell(v) for v in row) + " |"
                  for name, row in zip(report.members, matrix)]
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def save_report(report: DiversityReport, folder: Path) -> None:
    """diversity.json, diversity.md and diversity.png (the two matrices as heatmaps) in ``folder``."""
    write_json(folder / REPORT_JSON, report.to_dict())
    write_text(folder / REPORT_MD, render_markdown(report))
    _plot(report, folder / REPORT_PNG)


def _plot(report: DiversityReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(3.0, 0.6 * len(report.members) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    words = get_task(report.task).diversity
    titles = (words.disagreement_title, words.correlation)
    limits = (words.disagreement_range, (-1, 1))
    for ax, title, matrix, (low, high) in zip(axes, titles, (report.disagreement, report.error_correlation), limits):
        values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
        image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high)
        ax.set_xticks(range(len(report.members)), report.members, rotation=45, ha="right")
        ax.set_yticks(range(len(report.members)), report.members)
        ax.set_title(title)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, _cell(v), ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
