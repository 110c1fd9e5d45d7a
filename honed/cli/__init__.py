"""The command line: parse, call the library, print. ``honed --help`` lists the commands."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from honed.errors import HonedError

app = typer.Typer(help="honed: train, analyze, improve and ship image models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


def _register() -> None:
    from honed.cli import data_cmd, export_cmd, predict_cmd, runs_cmd, train_cmd

    app.command("train")(train_cmd.train)
    from honed.cli import demo_cmd

    app.command("demo")(demo_cmd.demo)
    app.command("predict")(predict_cmd.predict)
    app.command("runs")(runs_cmd.runs)
    app.command("show")(runs_cmd.show)
    app.command("export")(export_cmd.export)
    app.add_typer(data_cmd.app, name="data")
    from honed.cli import ensemble_cmd

    app.command("evaluate")(ensemble_cmd.evaluate)
    app.command("ensemble")(ensemble_cmd.ensemble)
    app.command("bag")(ensemble_cmd.bag)
    app.command("boost")(ensemble_cmd.boost)
    from honed.cli import analyze_cmd

    app.command("analyze")(analyze_cmd.analyze)
    app.command("improve")(analyze_cmd.improve)
    app.add_typer(analyze_cmd.augment_app, name="augment")
    from honed.cli import advise_cmd

    app.command("advise")(advise_cmd.advise)
    from honed.cli import regularize_cmd

    app.command("bn-recalibrate")(regularize_cmd.bn_recalibrate)
    app.command("fit-report")(regularize_cmd.fit_report)
    from honed.cli import tune_cmd

    app.command("tune")(tune_cmd.tune)
    from honed.cli import report_cmd

    app.command("report")(report_cmd.report)
    app.command("compare")(report_cmd.compare)
    from honed.cli import lr_find_cmd

    app.command("lr-find")(lr_find_cmd.lr_find)
    from honed.cli import workflow_cmd

    app.command("workflow")(workflow_cmd.workflow)
    from honed.cli import serve_cmd

    app.command("serve")(serve_cmd.serve)


def main() -> None:
    _register()
    try:
        app()
    except HonedError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
