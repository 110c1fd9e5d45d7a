"""The command line: parse, call the library, print. ``honed --help`` lists the commands."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from honed.errors import HonedError

app = typer.Typer(help="honed: train, analyze, improve and ship image models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


# (command, module in honed.cli, function), in the order of the practice: `honed --help` lists them so.
COMMANDS = (
    ("workflow", "workflow_cmd", "workflow"), ("demo", "demo_cmd", "demo"),
    ("advise", "advise_cmd", "advise"), ("lr-find", "lr_find_cmd", "lr_find"), ("train", "train_cmd", "train"),
    ("runs", "runs_cmd", "runs"), ("show", "runs_cmd", "show"), ("compare", "report_cmd", "compare"),
    ("report", "report_cmd", "report"), ("analyze", "analyze_cmd", "analyze"),
    ("fit-report", "regularize_cmd", "fit_report"), ("bn-recalibrate", "regularize_cmd", "bn_recalibrate"),
    ("improve", "analyze_cmd", "improve"), ("tune", "tune_cmd", "tune"), ("evaluate", "ensemble_cmd", "evaluate"),
    ("ensemble", "ensemble_cmd", "ensemble"), ("bag", "ensemble_cmd", "bag"), ("boost", "ensemble_cmd", "boost"),
    ("export", "export_cmd", "export"), ("predict", "predict_cmd", "predict"), ("serve", "serve_cmd", "serve"),
)
GROUPS = (("data", "data_cmd", "app"), ("augment", "analyze_cmd", "augment_app"))  # commands with subcommands


@app.callback()
def _workspace_ledger(
    ctx: typer.Context,
    ledger: str = typer.Option("", "--ledger", metavar="URL", help="The database holding the workspace's ledger "
                               "(and `honed tune`'s studies), e.g. postgresql://user@host:5432/db; default: "
                               "WORKSPACE/ledger.sqlite. Env: HONED_LEDGER."),
) -> None:
    """Every command reads the ledger URL from HONED_LEDGER (honed.tracking.ledger_db), so --ledger sets it for
    the command and the processes it starts, and puts the previous value back when the command ends."""
    if not ledger:
        return
    previous = os.environ.get("HONED_LEDGER")
    os.environ["HONED_LEDGER"] = ledger
    ctx.call_on_close(lambda: os.environ.__setitem__("HONED_LEDGER", previous) if previous is not None
                      else os.environ.pop("HONED_LEDGER", None))


def _register() -> None:
    """Attach every command to ``app`` (once: tests call this before each CliRunner use)."""
    from importlib import import_module

    if app.registered_commands:
        return
    for name, module, function in COMMANDS:
        app.command(name)(getattr(import_module(f"honed.cli.{module}"), function))
    for name, module, attribute in GROUPS:
        app.add_typer(getattr(import_module(f"honed.cli.{module}"), attribute), name=name)


# click's exceptions, as typer raises them: click's own, or the copy typer vendors (typer 0.2x)
CLICK_ERRORS = sys.modules[typer.BadParameter.__module__]


def main() -> None:
    _register()
    try:  # not standalone: click's usage errors come here, to be told in one line like the library's
        code = app(standalone_mode=False)
    except HonedError as error:
        _error(str(error))
        sys.exit(2)
    except getattr(CLICK_ERRORS, "NoArgsIsHelpError", ()) as error:  # `honed`, `honed data`: help shown
        sys.exit(error.exit_code)
    except CLICK_ERRORS.ClickException as error:  # a bad option value, a missing argument, an unknown command
        context = getattr(error, "ctx", None)
        _error(error.format_message() + (f" (see `{context.command_path} --help`)" if context else ""))
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:  # a command's typer.Exit(code)
        sys.exit(code)


def _error(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
