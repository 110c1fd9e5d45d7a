"""What a report page shows, as plain dataclasses: filled by ``collect``, drawn by ``figures``, rendered by
``html``. A field left ``None`` means its files are missing; the page then says how to add them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class StepRow:
    """One run of the leaderboard tree."""

    name: str
    depth: int  # 0 for a root, parent depth + 1 below it
    parent: str | None
    kind: str
    status: str
    model: str
    metric: str
    score: float | None
    delta: float | None  # score minus the parent's score on the same metric, None when not comparable
    improved: bool | None  # delta in the metric's good direction (None when no delta)
    duration_s: float
    change: str
    is_focus: bool = False
    is_best: bool = False


@dataclass
class Worst:
    """A validation mistake: the image path, what it is, what the model said."""

    path: str
    target: str
    prediction: str
    confidence: float | None
    loss: float | None


@dataclass
class Outcome:
    """What a child run bought over the analyzed run: its change and the score delta."""

    name: str
    change: str
    metric: str
    score: float | None
    delta: float | None
    improved: bool | None


@dataclass
class AnalysisData:
    """The parts of analysis.json the report shows, from ``source`` (the focus run or its nearest ancestor)."""

    source: str
    factors: list[dict]  # FactorScore.to_dict(), best explanation first
    recommendations: list[dict]  # Recommendation.to_dict(), strongest first
    recommended: dict  # {"policy", "regularization"}: what `honed improve` applies
    outcomes: list[Outcome]  # the analyzed run's trained children
    shifts: dict = field(default_factory=dict)  # split statistics, candidate shifts, evidence (honed.analyze.shift)
    shift_png: bytes | None = None  # the worst images a shift explains, above the same transformed back


@dataclass
class BundleCard:
    path: Path
    markdown: str
    run: str = ""  # the run the bundle was exported from ('' when unknown)


@dataclass
class DataQuality:
    """Doubtful labels and image quality: the run's validation mistakes cleanlab doubts (from the analysis or
    the predictions) or the workflow setup's training list, and the image quality shares per split."""

    label_issues: list[dict] = field(default_factory=list)  # path, given, suggested, score; most doubtful first
    label_source: str = ""  # where the list comes from, in words
    quality: dict = field(default_factory=dict)  # split -> flag -> share (the analysis's image_quality)


@dataclass
class ReportData:
    """Everything one report page shows."""

    title: str
    workspace: Path | None
    focus: str  # the run the page centres on
    run_dir: Path
    task: str
    metric: str
    greater_is_better: bool
    steps: list[StepRow] = field(default_factory=list)  # tree order
    history: pd.DataFrame | None = None  # metrics.csv
    confusion: tuple[list[str], np.ndarray] | None = None  # classes and counts [true, predicted]
    worst: list[Worst] | None = None
    worst_source: str = ""  # "analysis" or "predictions"
    analysis: AnalysisData | None = None
    diversity: dict | None = None  # diversity.json
    diversity_run: str = ""
    card: BundleCard | None = None
    data_quality: DataQuality | None = None
