"""``honed runs`` and ``honed show``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from honed.cli.progress import out_console
from honed.cli.json_out import print_json
from honed.errors import HonedError
from honed.artifacts.run_folder import CONFIG_FILE, METRICS_FILE


def runs(workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder."),
         leaderboard: bool = typer.Option(False, "--leaderboard", help="Best first, flat, instead of the step tree."),
         json_out: bool = typer.Option(False, "--json", help="Print the runs as a JSON list (ledger records, "
                                       "best first) instead of a table.")) -> None:
    """The step tree: every run under its parent, with its score, the change from the parent and what changed
    (--leaderboard: best first)."""
    from honed.tracking.ledger import Ledger, has_ledger
    from honed.tracking.tree import run_tree

    if not has_ledger(workspace):
        raise HonedError(f"no workspace at {workspace}: train a run first, or pass --workspace")
    with Ledger(workspace) as ledger:
        records = ledger.runs(order_by_score=True)
    if json_out:
        print_json([asdict(r) for r in records])
        return
    rows = [(r, 0, None) for r in records] if leaderboard else [(t.record, t.depth, t.delta) for t in run_tree(records)]
    table = Table(title=f"runs in {workspace}")
    for column in ("name", "kind", "status", "model", "metric", "score", "delta", "minutes", "change"):
        table.add_column(column, justify="right" if column in ("score", "delta", "minutes") else "left")
    for r, depth, delta in rows:
        table.add_row("  " * depth + ("└ " if depth else "") + r.name, r.kind, r.status, r.model, r.metric,
                      "" if r.score is None else f"{r.score:.4f}", _delta(delta, r.greater_is_better),
                      f"{r.duration_s / 60:.1f}", r.change)
    out_console().print(table)


def _delta(delta: float | None, greater_is_better: bool) -> str:
    if delta is None:
        return ""
    better = delta > 0 if greater_is_better else delta < 0
    return f"[{'green' if better else 'red'}]{delta:+.4f}[/]" if delta else "+0.0000"


def show(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the run as one JSON object (record, config, "
                                  "metrics per epoch, files) instead of tables."),
) -> None:
    """One run: its ledger row, its configuration, and its metrics per epoch."""
    import pandas as pd

    from honed.tracking.ledger import Ledger
    from honed.artifacts.run_folder import find_run

    run_dir = find_run(workspace, run)
    console = out_console()
    with Ledger(run_dir.parent) as ledger:
        record = ledger.get(run_dir.name)
    if json_out:
        import yaml

        history = run_dir / METRICS_FILE
        print_json({"record": asdict(record) if record is not None else None, "run_dir": str(run_dir),
                    "config": yaml.safe_load((run_dir / CONFIG_FILE).read_text()),
                    "history": pd.read_csv(history).to_dict(orient="records") if history.exists() else [],
                    "files": sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))})
        return
    if record is not None:
        console.print(f"[bold]{record.name}[/]  {record.status}  {record.model}  {record.metric} "
                      f"{'' if record.score is None else f'{record.score:.4f}'}  parent: {record.parent or '-'}  "
                      f"change: {record.change or '-'}")
    console.print((run_dir / CONFIG_FILE).read_text().rstrip(), highlight=False)  # no blank line after it
    history = run_dir / METRICS_FILE
    if history.exists():
        frame = pd.read_csv(history)
        table = Table(title="metrics per epoch")
        for column in frame.columns:
            table.add_column(column, justify="right")
        for row in frame.itertuples(index=False):  # itertuples keeps the epoch an integer
            table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)
    console.print(f"files: {', '.join(sorted(p.name for p in run_dir.iterdir() if not p.name.startswith('.')))}")
