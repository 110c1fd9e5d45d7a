"""``honed data check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from honed.cli.json_out import print_json
from honed.cli.progress import RichReporter, out_console

app = typer.Typer(help="Look at data before training on it.", no_args_is_help=True)


@app.command("check")
def check(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Also write the full report (and the label "
                                           "issues, under 'label_issues') as JSON to this file; '-': print it on "
                                           "stdout instead of tables, with no progress bar."),
    label_column: str = typer.Option("label", help="Manifest column with class names."),
    path_column: str = typer.Option("path", help="Manifest column with image paths."),
    near_distance: int = typer.Option(4, help="Perceptual-hash distance under which images are near duplicates."),
    cheap: bool = typer.Option(False, help="Skip near-duplicate search and pixel statistics."),
    label_issues: bool = typer.Option(False, "--label-issues",
                                      help="Find training images whose label is probably wrong (cleanlab)."),
    csv_out: Path = typer.Option(Path("label_issues.csv"), "--csv",
                                 help="With --label-issues: the ranked list (path, given, suggested, score, rank)."),
    folds: str = typer.Option("", "--folds", help="With --label-issues: a k-fold run (honed train --folds K --name "
                              "RUN) whose validation predictions give the probabilities; default: frozen features."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Where --folds finds its runs."),
    model: str = typer.Option("tf_efficientnet_lite0", help="Backbone whose frozen features --label-issues uses."),
    image_size: int = typer.Option(0, help="Input size for those features (0: the model's own)."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write a page with thumbnails of the label "
                                            "issues (given, suggested) and the quality flags."),
    top: int = typer.Option(10, min=1, help="Label issues shown in the table and the page."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Audit a dataset: class balance, sizes and modes, bad files, duplicates and leakage across splits, image
    quality; with --label-issues, the labels that are probably wrong."""
    from honed.data.audit import audit
    from honed.data.audit_tables import render_audit
    from honed.data.sources import load_source
    from honed.progress import Phase
    from honed.tracking.atomic import write_text

    console, to_stdout = out_console(), json_out == "-"
    manifest = load_source(data, path_column=path_column, label_column=label_column)
    reporter = RichReporter(console, quiet=quiet or to_stdout)
    total = len(manifest.frame)
    with Phase(reporter, f"checking {total} images", total) as phase:
        report = audit(manifest.frame, near_duplicate_distance=near_distance, cheap=cheap, progress=phase)
    if to_stdout:
        console.quiet = True  # the JSON alone on stdout
    for renderable in render_audit(report):
        console.print(renderable)
    found = None
    if label_issues:
        from honed.analyze.label_issues import find_label_issues, write_csv

        found = find_label_issues(manifest, folds_run=folds, workspace=workspace, model=model,
                                  image_size=image_size, skip={b.path for b in report.bad_files})
        console.print(label_issue_table(found, top))
        write_csv(found, csv_out)
        console.print(f"{len(found)} label issues of {found.images} images ({found.source}) written to {csv_out}")
    payload = report.to_dict() | (found.to_dict() if found is not None else {})
    if json_out and not to_stdout:
        write_text(Path(json_out), json.dumps(payload, indent=2, default=str))
        console.print(f"report written to {json_out}", soft_wrap=True, highlight=False)
    if html_out:
        from honed.report.data_check import render_data_check

        write_text(html_out, render_data_check(report, found, source=data, top=top))
        console.print(f"page written to {html_out}", soft_wrap=True, highlight=False)
    if to_stdout:
        print_json(payload)


def label_issue_table(found, top: int) -> Table:
    """The ``top`` most likely wrong labels."""
    table = Table(title=f"Label issues: {len(found)} of {found.images} training images ({found.source})")
    for column in ("rank", "path", "given", "suggested", "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left",
                         overflow="fold" if column == "path" else "ellipsis")  # a path is worth reading whole
    for row in found.rows[:top]:
        table.add_row(str(row["rank"]), row["path"], row["given"], row["suggested"], f"{row['score']:.3f}")
    if not found.rows:
        table.add_row("", "none", "", "", "", style="green")
    return table
