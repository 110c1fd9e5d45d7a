"""``honed report`` and ``honed compare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from honed.cli.json_out import json_option, print_json
from honed.cli.progress import out_console

WORKSPACE = typer.Option(Path("honed-runs"), help="Workspace folder holding the runs and the ledger.")


def report(
    target: Optional[str] = typer.Argument(None, help="A run name (in --workspace), a run folder, or a workspace "
                                           "folder (default: --workspace, centred on its best run)."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    bundle: Optional[Path] = typer.Option(None, help="An exported bundle (folder or .zip) whose model card to "
                                          "show (default: one recorded in or found in the workspace)."),
    workspace: Path = WORKSPACE,
    json_out: bool = json_option("where the report was written"),
) -> None:
    """One self-contained HTML page: steps, curves, confusion, worst predictions, sensitivity, fixes, card."""
    from honed.report import build_report

    written = build_report(Path(target) if target else workspace, out, workspace=workspace, bundle=bundle)
    if json_out:
        print_json({"report": str(written), "bytes": written.stat().st_size})
        return
    out_console().print(f"report written to {escape(str(written))} ({written.stat().st_size / 1024:.0f} KiB)",
                    highlight=False, soft_wrap=True)


def compare(
    run_a: str = typer.Argument(..., help="The first run: a name (in --workspace) or a run folder."),
    run_b: str = typer.Argument(..., help="The second run: a name (in --workspace) or a run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    workspace: Path = WORKSPACE,
) -> None:
    """The config keys that differ between two runs, and their best-epoch metrics side by side with the delta."""
    from honed.report.compare import compare_runs
    from honed.artifacts.run_folder import find_run

    result = compare_runs(find_run(workspace, run_a), find_run(workspace, run_b))
    console = out_console()
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    a, b = escape(result.a), escape(result.b)
    config = Table(title="config differences")
    for column in ("key", a, b):
        config.add_column(column)
    for change in result.config:
        config.add_row(escape(change.key), escape(_value(change.a)), escape(_value(change.b)))
    if result.config:
        console.print(config)
    else:
        console.print("configs: identical")
    epochs = {name: ("ledger" if e is None else f"epoch {e}") for name, e in result.best_epoch.items()}
    metrics = Table(title=f"best-epoch metrics ({a}: {epochs[result.a]}, {b}: {epochs[result.b]}; "
                          f"delta = {b} - {a})")
    metrics.add_column("metric")
    for column in (a, b, "delta"):
        metrics.add_column(column, justify="right")
    for m in result.metrics:
        style = {"b": "green", "a": "red"}.get(m.better, "")
        delta = "" if m.delta is None else f"[{style}]{m.delta:+.4f}[/]" if style else f"{m.delta:+.4f}"
        metrics.add_row(escape(m.name) + (" *" if m.name == result.metric else ""), _number(m.a), _number(m.b),
                        delta)
    console.print(metrics)


def _value(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value) if isinstance(value, (list, dict, str)) else str(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
