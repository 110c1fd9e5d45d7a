"""``honed runs`` and ``honed show``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from honed.errors import HonedError


def runs(workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder.")) -> None:
    """The leaderboard: every run, best first, with its parent, what changed and its score."""
    from honed.tracking.ledger import Ledger

    if not (workspace / "ledger.sqlite").exists():
        raise HonedError(f"no workspace at {workspace}: train a run first, or pass --workspace")
    with Ledger(workspace) as ledger:
        records = ledger.runs(order_by_score=True)
    table = Table(title=f"runs in {workspace}")
    for column in ("name", "parent", "kind", "status", "model", "metric", "score", "minutes", "change"):
        table.add_column(column, justify="right" if column in ("score", "minutes") else "left")
    for r in records:
        table.add_row(r.name, r.parent or "", r.kind, r.status, r.model, r.metric,
                      "" if r.score is None else f"{r.score:.4f}", f"{r.duration_s / 60:.1f}", r.change)
    Console().print(table)


def show(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder."),
) -> None:
    """One run: its ledger row, its configuration, and its metrics per epoch."""
    import pandas as pd

    from honed.tracking.ledger import Ledger
    from honed.tracking.runs import find_run

    run_dir = find_run(workspace, run)
    console = Console()
    with Ledger(run_dir.parent) as ledger:
        record = ledger.get(run_dir.name)
    if record is not None:
        console.print(f"[bold]{record.name}[/]  {record.status}  {record.model}  {record.metric} "
                      f"{'' if record.score is None else f'{record.score:.4f}'}  parent: {record.parent or '-'}  "
                      f"change: {record.change or '-'}")
    console.print((run_dir / "config.yaml").read_text())
    history = run_dir / "metrics.csv"
    if history.exists():
        frame = pd.read_csv(history)
        table = Table(title="metrics per epoch")
        for column in frame.columns:
            table.add_column(column, justify="right")
        for _, row in frame.iterrows():
            table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)
    console.print(f"files: {', '.join(sorted(p.name for p in run_dir.iterdir() if not p.name.startswith('.')))}")
