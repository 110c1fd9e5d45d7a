"""``run_workflow``: the practice end to end (setup, baseline, improvement, search, TTA, ensemble, export,
report), each step recorded, within a budget, resumable where it stopped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from honed.errors import HonedError
from honed.tracking.atomic import write_json
from honed.tracking.ledger import Ledger, check_name
from honed.progress import LogReporter, Reporter
from honed.workflow import pace, steps
from honed.workflow.augmented_head import augmented_head
from honed.workflow.budget import Budget
from honed.workflow.context import Context, WorkflowSpec
from honed.workflow.plan import Plan
from honed.workflow.state import WorkflowState

SPEC_FILE = "workflow-spec.json"
STEPS = (steps.setup, steps.baseline, augmented_head, steps.improve, steps.tune, steps.tta, steps.ensemble,
         steps.export)


@dataclass
class WorkflowResult:
    name: str
    folder: Path
    state: WorkflowState
    bundle: Path | None
    report: Path | None

    @property
    def best(self) -> str:
        return self.state.best

    @property
    def best_score(self) -> float | None:
        return self.state.best_score

    def to_dict(self) -> dict:
        return {"name": self.name, "folder": str(self.folder), "metric": self.state.metric, "best": self.best,
                "best_score": self.best_score, "seconds": self.state.seconds,
                "budget_s": self.state.plan.get("budget_s"), "overrun_s": self.state.overrun_s, "plan": self.state.plan,
                "bundle": str(self.bundle) if self.bundle else None, "report": str(self.report) if self.report else None,
                "steps": [{k: v for k, v in vars(s).items() if k != "details"} for s in self.state.steps]}


def run_workflow(spec: WorkflowSpec, *, reporter: Reporter | None = None) -> WorkflowResult:
    """Run ``spec``'s workflow, or continue it when ``WORKSPACE/NAME`` holds an unfinished one."""
    reporter = reporter or LogReporter()
    folder = Path(spec.base.workspace) / check_name(spec.name)
    state = _claim(folder, spec)
    ctx = Context(spec, folder, state, Budget(spec.budget_s, spec.max_runs, spent_before=state.seconds), reporter,
                  plan=Plan.from_dict(state.plan) if state.plan else None)
    if state.steps:
        reporter.message(f"resuming workflow {spec.name}: {sum(s.status != 'running' for s in state.steps)} step(s) "
                         f"done, {state.seconds / 60:.1f} of {spec.budget_s / 60:.1f} min spent")
    try:
        for step in STEPS:
            step(ctx)
    except (KeyboardInterrupt, Exception):
        ctx.save()  # the time spent counts against the budget when it resumes
        raise
    _close_root_row(ctx)  # before the report, which shows this row: a finished workflow's report says done
    steps.report(ctx)
    pace.close(ctx)
    _close_root_row(ctx)  # again, so that its duration counts the report too
    ctx.mirror()
    state.finished = True  # last: a workflow killed before this point resumes and writes its report again
    ctx.save()
    return _result(spec.name, folder, state)


def _result(name: str, folder: Path, state: WorkflowState) -> WorkflowResult:
    bundle, report = folder / "bundle", folder / "report.html"
    return WorkflowResult(name, folder, state, bundle if bundle.exists() else None,
                          report if report.exists() else None)


def resume_workflow(workspace: Path, name: str, *, reporter: Reporter | None = None) -> WorkflowResult:
    """Continue an interrupted workflow with the settings it was started with."""
    import json

    path = Path(workspace) / name / SPEC_FILE
    if not path.exists():
        raise HonedError(f"no workflow {name!r} in {workspace} to resume: see `honed runs --workspace {workspace}`")
    spec = WorkflowSpec.from_dict(json.loads(path.read_text()))
    spec.base.workspace = str(workspace)
    state = WorkflowState.load(path.parent)
    if state is not None and state.finished:  # nothing left to do (e.g. retried after a kill at its very end)
        (reporter or LogReporter()).message(f"workflow {name} had already finished: nothing to resume")
        return _result(spec.name, path.parent, state)
    return run_workflow(spec, reporter=reporter)


def _claim(folder: Path, spec: WorkflowSpec) -> WorkflowState:
    """The saved state of an unfinished workflow with this name, or a fresh one in a new folder."""
    state = WorkflowState.load(folder)
    if state is not None and not state.steps:  # failed before its first step (e.g. a wrong path): start afresh
        write_json(folder / SPEC_FILE, spec.to_dict())
        return state
    if state is not None:
        if state.finished:
            raise HonedError(f"workflow {spec.name!r} in {folder.parent} is finished: choose another --name "
                             f"(its report: {folder / 'report.html'})")
        return state
    with Ledger(folder.parent) as ledger:
        if ledger.get(spec.name) is not None or folder.exists():
            raise HonedError(f"{spec.name!r} already names a run in {folder.parent}: choose another --name")
    folder.mkdir(parents=True)
    write_json(folder / SPEC_FILE, spec.to_dict())
    state = WorkflowState(spec.name)
    state.save(folder)
    return state


def _close_root_row(ctx: Context) -> None:
    """The workflow's own ledger row: done, naming the best step and its score."""
    setup = ctx.state.step("setup")
    final = f"; best {ctx.state.best} {ctx.metric} {ctx.state.best_score:.4f}" if ctx.state.best_score is not None else ""
    ctx.record_row(ctx.spec.name, kind="workflow", parent="", change=(setup.change if setup else "") + final,
                   score=None, metrics={"best": ctx.state.best, "best_score": ctx.state.best_score},
                   duration_s=ctx.state.seconds, path=ctx.spec.name)
