"""The honed CLI in-process, for typer's CliRunner (patches made by a test then reach the command)."""

from __future__ import annotations

import typer

from honed.cli import _register, app


def cli_app() -> typer.Typer:
    """``honed.cli.app`` with its commands registered (once: registering twice would duplicate them)."""
    if not app.registered_commands:
        _register()
    return app
