"""A workflow's progress on disk: one JSON file of steps, rewritten atomically after each step, so an
interrupted workflow resumes at the first step that is not done."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from honed.errors import HonedError
from honed.tracking.atomic import write_json

STATE_FILE = "workflow.json"


@dataclass
class Step:
    """One step as the workflow reports it: what ran, its score, the change from its parent, its cost."""

    key: str  # "setup", "baseline", "improve-1", "tune", "tta", "ensemble", "export"
    status: str  # running, done, skipped, failed
    run: str = ""  # the ledger row this step wrote ("" for none)
    parent: str = ""
    change: str = ""  # what this step changed, in words
    score: float | None = None  # validation score of the step's run (None when it has none)
    delta: float | None = None  # score minus the parent's: positive is better for greater-is-better metrics
    seconds: float = 0.0
    kept: bool = False  # whether the step's run became the workflow's best
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkflowState:
    name: str
    metric: str = ""
    best: str = ""  # the best run (a training run or an ensemble) so far
    best_score: float | None = None
    seconds: float = 0.0  # time spent over every session of this workflow
    steps: list[Step] = field(default_factory=list)
    finished: bool = False
    plan: dict[str, Any] = field(default_factory=dict)  # the plan (honed.workflow.plan.Plan.to_dict())
    overrun_s: float = 0.0  # seconds past the budget when it finished (the last step's overrun)

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    def done(self, key: str) -> Step | None:
        found = self.step(key)
        return found if found is not None and found.status in ("done", "skipped") else None

    def put(self, step: Step) -> Step:
        self.steps = [s for s in self.steps if s.key != step.key] + [step]
        return step

    def trained_runs(self) -> int:
        return sum(int(s.details.get("runs", 0)) for s in self.steps if s.status == "done")

    def save(self, folder: Path) -> None:
        write_json(folder / STATE_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> WorkflowState | None:
        path = folder / STATE_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            raw["steps"] = [Step(**s) for s in raw.get("steps", [])]
            return cls(**raw)
        except (json.JSONDecodeError, TypeError) as error:
            raise HonedError(f"{path} is damaged ({error}): start the workflow again under another --name") from None
