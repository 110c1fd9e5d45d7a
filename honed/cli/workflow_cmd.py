"""``honed workflow``: setup, baseline, improvement, search, TTA, ensemble and export, within a budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from honed.cli.progress import RichReporter, out_console
from honed.cli.train_cmd import given_as_flag
from honed.config import OPTION_FIELDS, read_mapping
from honed.errors import HonedError


def workflow(
    ctx: typer.Context,
    data: Optional[str] = typer.Argument(None, help="A folder of class folders or a CSV/Parquet manifest."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="A workflow config in YAML (the keys of "
                                               "a workflow's workflow-spec.json) or a run's config.yaml; "
                                               "options given as flags override it."),
    budget: str = typer.Option("30m", help="Wall-clock budget: 90s, 20m, 1h30m. Steps that would not fit are skipped."),
    max_runs: int = typer.Option(0, min=0, help="At most this many trained runs (0: as many as the time allows)."),
    name: str = typer.Option("workflow", help="Workflow name: its folder, and the prefix of its runs."),
    resume: str = typer.Option("", help="Continue the interrupted workflow with this name, with its own settings."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder holding the runs and the ledger."),
    model: str = typer.Option("tf_efficientnet_lite0", help="Any timm model name, or a torchvision one; auto: "
                              "the pip-shipped pretrained backbone whose features fit best for their cost."),
    pretrained: bool = typer.Option(True, help="Start from ImageNet weights (pip-shipped or timm's hub)."),
    strategy: str = typer.Option("auto", help="Transfer strategy, or auto: the advisor picks from the data."),
    lr: float = typer.Option(0.0, help="Learning rate; 0: found with an LR range test."),
    epochs: int = typer.Option(5, min=1, help="Training epochs of each run."),
    batch_size: int = typer.Option(64, min=1, help="Images per step."),
    image_size: int = typer.Option(0, help="Input size in pixels (default: the model's)."),
    task: str = typer.Option("classify", help="classify or regress."),
    target: List[str] = typer.Option([], help="Manifest column with a numeric target (regression); repeatable."),
    val_fraction: float = typer.Option(0.2, help="Stratified holdout when the data has no val/ split."),
    exclude_label_issues: str = typer.Option("", help="Train every run without the N likeliest label issues (found "
                                             "now) or the images a file lists; by default they are only counted."),
    metric: str = typer.Option("", help="Main metric: accuracy, macro_f1, log_loss, mae or rmse."),
    improve_rounds: int = typer.Option(3, min=0, help="Analyze -> improve rounds (stopped when a round does not help)."),
    tune_trials: int = typer.Option(4, min=0, help="Optuna trials around the best run (0: no search)."),
    tta: str = typer.Option("flip", help="Test-time views to try on the best run ('' : no TTA step)."),
    ensemble_size: int = typer.Option(3, min=0, help="Best runs voted together (0 or 1: no ensemble)."),
    onnx: bool = typer.Option(False, help="Add an ONNX file (parity-checked) to the exported bundle."),
    refit: bool = typer.Option(True, help="Export a refit of the chosen run on train + val, for the epochs its "
                               "validation run found (--no-refit: export the validation-selected run itself)."),
    min_gain: float = typer.Option(0.0, min=0.0, help="A step is kept only when it beats the best by more than this."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(-1, help="DataLoader workers (-1: one per core, up to 8)."),
    seed: int = typer.Option(0, help="Seed for splits, initialisation and shuffling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or step lines."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (implies --quiet)."),
    log: List[str] = typer.Option([], "--log", help="Also log to tensorboard (each run's event files) or mlflow "
                                  "(every step as a run nested under the workflow's, with its files; "
                                  "MLFLOW_TRACKING_URI, else the workspace); repeatable. "
                                  "Needs `pip install honed[log]`."),
) -> None:
    """The practice end to end: setup (data check, advisor, LR range test), baseline, analyze -> improve,
    a small search, TTA and an ensemble when they pay, and the best step exported as a bundle, with a report."""
    from honed.workflow import resume_workflow, run_workflow, workflow_spec
    from honed.workflow.api import SPEC_OPTIONS

    console = out_console()
    reporter = RichReporter(console, quiet=quiet or as_json)
    if resume:
        result = resume_workflow(workspace, resume, reporter=reporter)
    else:
        options = {key: value for key, value in ctx.params.items() if key in OPTION_FIELDS or key in SPEC_OPTIONS}
        options.update(workspace=str(workspace), target=list(target))
        if data is None:
            options.pop("data")
        spec = workflow_spec(options, read_mapping(config_file) if config_file else None,
                             explicit=[key for key in options if given_as_flag(ctx, key)])
        if not spec.base.data.source:
            raise HonedError("give the data (a folder or a CSV/Parquet manifest), or --resume NAME")
        if exclude_label_issues:  # an explicit choice: setup's change in the ledger says so
            from honed.analyze.label_issues import exclusion

            spec.base.name = spec.name
            spec.base.data.exclude, _ = exclusion(spec.base, exclude_label_issues, reporter=reporter)
            spec.base.name = ""
        result = run_workflow(spec, reporter=reporter)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    if not quiet:
        console.print(steps_table(result))
        console.print(f"best: {result.best} ({result.state.metric} {result.best_score:.4f}); bundle: {result.bundle}; "
                      f"report: {result.report}", soft_wrap=True, highlight=False)


def steps_table(result) -> Table:
    table = Table(title=f"workflow {result.name}: {result.state.seconds / 60:.1f} min")
    for column in ("step", "run", "score", "delta", "kept", "seconds", "change"):
        table.add_column(column, justify="right" if column in ("score", "delta", "seconds") else "left")
    for s in result.state.steps:
        table.add_row(s.key, s.run, score_cell(s), "" if s.delta is None else f"{s.delta:+.4f}",
                      "yes" if s.kept else "", f"{s.seconds:.0f}", s.change)
    if any((s.details or {}).get("check") for s in result.state.steps):
        table.caption = "(score): a fix's short check, compared with the control check, not a candidate for best"
    return table


def score_cell(step) -> str:
    """A step's score; a check's, in parentheses: it is compared with the control check, not with the best run."""
    if step.score is not None:
        return f"{step.score:.4f}"
    check = step.details or {}
    return f"({check['score']:.4f})" if check.get("check") and check.get("score") is not None else ""
