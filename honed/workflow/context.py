"""What every workflow step shares: the spec, the folder, the saved state, the budget, and how a step is
recorded (in ``workflow.json`` and in the workspace ledger, as a child of the step before it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from honed.config import RunConfig
from honed.metrics import GREATER_IS_BETTER, is_better
from honed.progress import LogReporter, Reporter
from honed.tracking.ledger import Ledger, RunRecord
from honed.workflow.budget import Budget
from honed.workflow.plan import Plan
from honed.workflow.state import Step, WorkflowState


@dataclass
class WorkflowSpec:
    """What to run. ``base`` carries the data, model, preprocessing and training settings every run shares."""

    name: str
    base: RunConfig
    budget_s: float
    max_runs: int = 0  # 0: as many trained runs as the time allows
    strategy: str = "auto"  # a transfer strategy, or auto: the advisor decides in the setup step
    lr: float = 0.0  # 0: an LR range test picks the learning rate
    improve_rounds: int = 3  # analyze -> improve rounds, stopped early when a round does not help
    tune_trials: int = 4  # Optuna trials around the best run (0: no search)
    tta: str = "flip"  # test-time views tried on the best run ("": no TTA step)
    ensemble_size: int = 3  # best runs voted together (0 or 1: no ensemble step)
    export_formats: tuple[str, ...] = ("bundle",)
    min_gain: float = 0.0  # a step is kept only when it beats the best by more than this
    analysis_images: int = 2000  # validation images the error analysis probes (training images: an eighth)
    refit: bool = True  # export a refit of the chosen run on train + val (honed.workflow.refit); False: the run itself

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base.to_dict(), "budget_s": self.budget_s, "max_runs": self.max_runs,
                "strategy": self.strategy, "lr": self.lr, "improve_rounds": self.improve_rounds,
                "tune_trials": self.tune_trials, "tta": self.tta, "ensemble_size": self.ensemble_size,
                "export_formats": list(self.export_formats), "min_gain": self.min_gain,
                "analysis_images": self.analysis_images, "refit": self.refit}

    @classmethod
    def from_dict(cls, raw: dict) -> WorkflowSpec:
        raw = dict(raw)
        raw["base"] = RunConfig.from_dict(raw["base"])
        raw["export_formats"] = tuple(raw.get("export_formats", ("bundle",)))
        return cls(**raw)


@dataclass
class Context:
    spec: WorkflowSpec
    folder: Path
    state: WorkflowState
    budget: Budget
    reporter: Reporter = field(default_factory=LogReporter)
    plan: Plan | None = None  # sizes and skips of the steps (None until setup plans them)

    @property
    def workspace(self) -> Path:
        return Path(self.spec.base.workspace)

    @property
    def metric(self) -> str:
        return self.state.metric

    def run_name(self, suffix: str) -> str:
        return f"{self.spec.name}-{suffix}"

    def save(self) -> None:
        self.state.seconds = self.budget.spent()
        self.state.save(self.folder)

    def improves(self, score: float | None) -> bool:
        """Better than the best so far by more than ``min_gain``."""
        if score is None:
            return False
        best = self.state.best_score
        if best is None:
            return True
        margin = self.spec.min_gain if GREATER_IS_BETTER[self.metric] else -self.spec.min_gain
        return is_better(self.metric, score, best + margin)

    def delta(self, score: float | None, parent_score: float | None) -> float | None:
        return None if score is None or parent_score is None else score - parent_score

    def finish_step(self, step: Step) -> Step:
        """Record a finished step; it becomes the best when it is kept."""
        if step.kept:
            self.state.best, self.state.best_score = step.run, step.score
        self.state.put(step)
        self.save()
        self.mirror()
        self.reporter.message(describe(step, self.metric, self.budget.remaining()))
        return step

    def mirror(self) -> None:
        """``--log mlflow``: the ledger's rows so far as nested MLflow runs (a step's rows, the workflow's)."""
        if "mlflow" in self.spec.base.train.log:
            from honed.tracking.mlflow_mirror import mirror_ledger

            with Ledger(self.workspace) as ledger:  # this workflow's rows (and their parents), not the workspace's
                names = [r.name for r in ledger.runs() if r.name == self.spec.name
                         or r.name.startswith(f"{self.spec.name}-")]
            try:
                mirror_ledger(self.workspace, names=names)
            except Exception as error:  # noqa: BLE001 - a tracking server's trouble must not stop the workflow
                self.reporter.message(f"warning: the ledger could not be mirrored to MLflow: {error}")

    def finish_against_best(self, step: Step) -> Step:
        """A scored step measured against the best so far: its delta, and kept when it beats it."""
        step.delta = self.delta(step.score, self.state.best_score)
        step.kept = self.improves(step.score)
        return self.finish_step(step)

    def skip(self, key: str, why: str) -> Step:
        return self.finish_step(Step(key, "skipped", change=why))

    def record_row(self, name: str, *, kind: str, parent: str, change: str, score: float | None,
                   metrics: dict, duration_s: float, path: str = "", status: str = "done") -> None:
        """A ledger row for a step that is not a training run (setup, TTA, export)."""
        base = self.spec.base
        with Ledger(self.workspace) as ledger:
            ledger.upsert(RunRecord(name=name, parent=parent or None, change=change, kind=kind, status=status,
                                    task=base.data.task, model=base.model.name, metric=self.metric, score=score,
                                    greater_is_better=GREATER_IS_BETTER[self.metric], metrics=metrics,
                                    duration_s=duration_s, path=path))


def describe(step: Step, metric: str, remaining_s: float) -> str:
    """One line per step for the terminal: what ran, its score and change, its cost, the budget left."""
    if step.status == "skipped":
        return f"[bold]{step.key}[/]: skipped ({step.change}); budget left {remaining_s / 60:.1f} min"
    score = "" if step.score is None else f" {metric} {step.score:.4f}"
    delta = "" if step.delta is None else f" ({step.delta:+.4f} vs {step.parent})"
    kept = " [green]kept[/]" if step.kept else ""
    return (f"[bold]{step.key}[/] {step.run}:{score}{delta}{kept} in {step.seconds:.0f}s"
            f"{' - ' + step.change if step.change else ''}; budget left {remaining_s / 60:.1f} min")
