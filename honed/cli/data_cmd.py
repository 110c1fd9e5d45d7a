"""``honed data check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from honed.cli.json_out import print_json
from honed.cli.progress import RichReporter, out_console

app = typer.Typer(help="Look at data before training on it.", no_args_is_help=True)


@app.command("check")
def check(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the full report as JSON here."),
    json_out: bool = typer.Option(False, "--json", help="Print the full report as one JSON object on stdout "
                                  "instead of tables; no progress bar."),
    label_column: str = typer.Option("label", help="Manifest column with class names."),
    path_column: str = typer.Option("path", help="Manifest column with image paths."),
    near_distance: int = typer.Option(4, help="Perceptual-hash distance under which images are near duplicates."),
    cheap: bool = typer.Option(False, help="Skip near-duplicate search and pixel statistics."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Audit a dataset: class balance, sizes and modes, bad files, duplicates and leakage across splits."""
    from honed.data.audit import audit
    from honed.data.audit_tables import render_audit
    from honed.data.sources import load_source
    from honed.progress import Phase
    from honed.tracking.atomic import write_text

    console = out_console()
    manifest = load_source(data, path_column=path_column, label_column=label_column)
    reporter = RichReporter(console, quiet=quiet or json_out)
    total = len(manifest.frame)
    with Phase(reporter, f"checking {total} images", total) as phase:
        report = audit(manifest.frame, near_duplicate_distance=near_distance, cheap=cheap, progress=phase)
    if out:
        write_text(out, json.dumps(report.to_dict(), indent=2, default=str))
    if json_out:
        print_json(report.to_dict())
        return
    for renderable in render_audit(report):
        console.print(renderable)
    if out:
        console.print(f"report written to {out}", soft_wrap=True, highlight=False)
