"""``honed bn-recalibrate`` and ``honed fit-report``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.cli.json_out import json_option, print_json
from honed.cli.progress import out_console

WORKSPACE = typer.Option(Path("honed-runs"), help="Workspace folder holding the runs and the ledger.")


def bn_recalibrate(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    weights: str = typer.Option("best", help="Which weights to recalibrate: best, last or swa."),
    batches: int = typer.Option(100, min=0, help="Training batches to re-estimate on (0: the whole split)."),
    batch_size: int = typer.Option(64, min=2, help="Images per batch."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(-1, help="Decoding workers (-1: one per core, up to 8)."),
    seed: int = typer.Option(0, help="Seed of the training-image sample."),
    workspace: Path = WORKSPACE,
    json_out: bool = json_option("the scores before and after"),
) -> None:
    """Re-estimate batch norm running statistics on the run's training images; keeps the old weights."""
    from honed.artifacts.run_folder import find_run
    from honed.analyze.bn_recalibration import RECORD_FILE, recalibrate_run

    run_dir = find_run(workspace, run)
    result = recalibrate_run(run_dir, weights=weights, batches=batches, batch_size=batch_size, device=device,
                             workers=workers, seed=seed)
    if json_out:
        print_json({**result.to_dict(), "record": str(run_dir / RECORD_FILE)})
        return
    table = Table(title=f"{result.run}: {result.weights}, {result.layers} batch norm layers re-estimated on "
                        f"{result.images} training images (validation scores)")
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, before in result.before.items():
        after = result.after[key]
        table.add_row(key + (" (main)" if key == result.metric else ""), f"{before:.4f}", f"{after:.4f}",
                      f"{after - before:+.4f}")
    console = out_console()
    console.print(table)
    console.print(f"saved {result.weights}; the previous weights are in {result.backup}; record in "
                  f"{run_dir / RECORD_FILE}")


def fit_report(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    workspace: Path = WORKSPACE,
    json_out: bool = json_option("the verdict and its evidence"),
) -> None:
    """Over- or under-fitting, read from the run's learning curves, and the flags to try next."""
    from honed.analyze.fit_report import REPORT_FILE, run_fit_report
    from honed.artifacts.run_folder import find_run

    run_dir = find_run(workspace, run)
    report = run_fit_report(run_dir)
    if json_out:
        print_json({**report.to_dict(), "saved": str(run_dir / REPORT_FILE)})
        return
    console = out_console()
    print_fit_report(console, report)
    console.print(f"saved to {run_dir / REPORT_FILE}")


def print_fit_report(console: Console, report) -> None:
    """The verdict, its evidence and the suggestions, a line each (also used by ``honed analyze``)."""
    console.print(f"fit: [bold]{report.verdict}[/]")
    for line in report.evidence + [f"note: {n}" for n in report.notes]:
        console.print(f"  - {escape(line)}", highlight=False)
    for line in report.suggestions:
        console.print(f"  try: {escape(line)}", highlight=False)
