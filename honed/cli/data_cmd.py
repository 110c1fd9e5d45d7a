"""``honed data check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(help="Look at data before training on it.", no_args_is_help=True)


@app.command("check")
def check(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON here."),
    label_column: str = typer.Option("label", help="Manifest column with class names."),
    path_column: str = typer.Option("path", help="Manifest column with image paths."),
    near_distance: int = typer.Option(4, help="Perceptual-hash distance under which images are near duplicates."),
    cheap: bool = typer.Option(False, help="Skip near-duplicate search and pixel statistics."),
) -> None:
    """Audit a dataset: class balance, sizes and modes, bad files, duplicates and leakage across splits."""
    from honed.data.audit import audit
    from honed.data.audit_tables import render_audit
    from honed.data.sources import load_source
    from honed.tracking.atomic import write_text

    manifest = load_source(data, path_column=path_column, label_column=label_column)
    report = audit(manifest.frame, near_duplicate_distance=near_distance, cheap=cheap)
    console = Console()
    for renderable in render_audit(report):
        console.print(renderable)
    if json_out:
        write_text(json_out, json.dumps(report.to_dict(), indent=2, default=str))
        console.print(f"report written to {json_out}")
