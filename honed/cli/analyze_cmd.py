"""``honed analyze``, ``honed improve``, ``honed augment preview`` and ``honed augment list``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.cli.progress import RichReporter
from honed.errors import HonedError

WORKSPACE = typer.Option(Path("honed-runs"), help="Workspace folder holding the runs and the ledger.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")

augment_app = typer.Typer(help="See and list training augmentations.", no_args_is_help=True)


def analyze(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    probes: str = typer.Option("", help="Factors to probe, comma-separated (default all): size, rotation, "
                               "translation, flip, hue, saturation, brightness, contrast, blur, noise."),
    tta: str = typer.Option("", help="Analyze the model with these test-time views (e.g. flip,crops)."),
    max_images: int = typer.Option(2000, min=10, help="Validation images probed at most (a stratified sample)."),
    reference_images: int = typer.Option(256, min=10, help="Training images the sensitivity is measured on."),
    seed: int = typer.Option(0, help="Seed of the samples, probe draws and bootstrap."),
    workers: int = typer.Option(-1, help="Decoding workers (-1: one per core, up to 8)."),
    workspace: Path = WORKSPACE,
    quiet: bool = QUIET,
) -> None:
    """Find a run's weaknesses: worst predictions, confusion, probes, ranked factors and recommended fixes."""
    from honed.analyze import analyze_run
    from honed.artifacts.run_folder import find_run

    console = Console()
    analysis = analyze_run(find_run(workspace, run), tta=tta or None,
                           probes=[p.strip() for p in probes.split(",") if p.strip()] or None, seed=seed,
                           max_images=max_images, reference_images=reference_images, workers=workers,
                           reporter=RichReporter(console, quiet=quiet))
    summary = analysis.summary
    console.print(f"[bold]{analysis.run}[/]: failure {summary['val_failure']:.3f} on {summary['validation_images']} "
                  f"validation images vs {summary['train_failure']:.3f} on {summary['training_images']} training "
                  f"images (gap: {summary['relative_gap']:.2f} of the headroom)")
    console.print(_factor_table(analysis))
    console.print(_slice_table(analysis.slices[:6]))
    if analysis.recommendations:
        for rank, rec in enumerate(analysis.recommendations, 1):
            extra = ", ".join(f"{k} {v:g}" for k, v in rec.regularization.items())
            console.print(f"{rank}. {rec.title} (score {rec.score:.2f})"
                          + (f": [bold]{rec.policy}[/]" if rec.policy else "") + (f"; {extra}" if extra else ""))
            if rec.reason:
                console.print(f"   why: {escape(rec.reason)}")
        console.print(f"improve applies: augment {analysis.policy or '-'}"
                      + "".join(f", {k} {v:g}" for k, v in analysis.regularization.items())
                      + f"  (`honed improve {analysis.run}`)")
    else:
        console.print("no significant weakness found")
    _print_regularization_checks(console, analysis)
    from honed.analyze.calibration_report import summary_rows

    for row in summary_rows(analysis.calibration):  # ECE and NLL before -> after the run's temperature
        console.print(f"calibration ({analysis.calibration['status']}, T {analysis.calibration['temperature']:.3f}) "
                      f"on {row[0]}, {row[1]} images: ECE {row[2]}, NLL {row[3]}", highlight=False)
    console.print(f"saved to {analysis.folder}" + (f"; ledger row {analysis.ledger_name}" if analysis.ledger_name
                                                    else ""))


def improve(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    augment: str = typer.Option("", help="Augmentation to add to the run's policy, e.g. rotate:30 (default: the "
                                "analysis's recommendation)."),
    dropout: Optional[float] = typer.Option(None, help="Dropout before the classifier (default: recommended or "
                                            "the run's)."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (default: recommended or the run's)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs (default: the run's)."),
    name: str = typer.Option("", help="Name of the new run (default: RUN-improved, made unique)."),
    workspace: Path = WORKSPACE,
    quiet: bool = QUIET,
) -> None:
    """Train a child of RUN with the fix its analysis recommends (or the changes given), and compare them."""
    from honed.analyze import improve_run
    from honed.artifacts.run_folder import find_run

    console = Console()
    reporter = RichReporter(console, quiet=quiet)
    result, comparison = improve_run(find_run(workspace, run), augment=augment or None, dropout=dropout,
                                     weight_decay=weight_decay, epochs=epochs, name=name, reporter=reporter)
    console.print(f"[bold]{comparison['child']}[/] (parent {comparison['parent']}): {comparison['change']}")
    console.print(_comparison_table(comparison))
    console.print(f"saved to {result.run_dir}")


@augment_app.command("preview")
def preview(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    augment: str = typer.Option(..., help='The policy to preview, e.g. "hflip,rotate:15,color:0.3@0.5".'),
    out: Path = typer.Option(Path("augment-preview.png"), help="Where to write the PNG grid."),
    n: int = typer.Option(8, min=1, max=64, help="Images shown (one row each)."),
    draws: int = typer.Option(7, min=1, max=32, help="Augmented draws per image."),
    image_size: int = typer.Option(128, min=8, max=1024, help="Size the images are decoded at."),
    path_column: str = typer.Option("path", help="Manifest column with image paths."),
    label_column: str = typer.Option("label", help="Manifest column with class names."),
    seed: int = typer.Option(0, help="Seed of the image choice and the draws."),
) -> None:
    """A PNG grid: each row an image from DATA, then augmented draws, as training would see them."""
    from honed.analyze.source import sample_images
    from honed.augment import preview_grid

    images = sample_images(data, n, image_size=image_size, seed=seed, path_column=path_column,
                           label_column=label_column)
    written = preview_grid(images, augment, out, rows=len(images), draws=draws, seed=seed)
    Console().print(f"{len(images)} images x {draws} draws of {augment!r} written to {written}")


@augment_app.command("list")
def list_(pattern: str = typer.Argument("*", help='Names to show, with wildcards, e.g. "*flip".')) -> None:
    """The registered augmentations with their default strength and probability."""
    from honed.augment import AUGMENTATIONS

    names = sorted(AUGMENTATIONS.names(pattern))
    if not names:
        raise HonedError(f"no augmentation matches {pattern!r}: see `honed augment list`")
    table = Table(title=escape("augmentations (policy syntax: name[:strength][@probability], comma-separated)"))
    for column in ("name", "strength", "p", "what it does"):
        table.add_column(column, justify="right" if column in ("strength", "p") else "left")
    for name in names:
        spec = AUGMENTATIONS[name]
        table.add_row(name, f"{spec.default_strength:g}", f"{spec.default_p:g}", spec.help)
    Console().print(table)


def _print_regularization_checks(console: Console, analysis) -> None:
    """The learning-curve verdict and, when they look stale, the batch norm statistics warning."""
    from honed.analyze.fit_report import FitReport
    from honed.cli.regularize_cmd import print_fit_report

    if analysis.fit:
        print_fit_report(console, FitReport(**analysis.fit))
    staleness = analysis.bn_staleness
    if staleness.get("stale"):
        console.print(f"[bold yellow]warning:[/] {escape(staleness['message'])}", highlight=False)


def _factor_table(analysis) -> Table:
    table = Table(title="factors, best explanation first (shares of the headroom)")
    table.add_column("factor", no_wrap=True)
    for column in ("score", "expected", "concentr.", "matched"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("fix (weaknesses only)", overflow="fold")
    for f in analysis.factors:
        table.add_row(f.name, f"{f.score:.2f}", f"{f.expected_drop:.2f}", f"{f.concentration:.2f}",
                      f"{f.matched_strength:.3g}", f.policy if f.significant else "")
    return table


def _slice_table(slices: list[dict]) -> Table:
    table = Table(title="validation slices where the model fails most (failure rates)")
    for column in ("slice", "images", "failure", "rest", "95% CI of the difference"):
        table.add_column(column, justify="left" if column == "slice" else "right")
    for row in slices:
        low, high = row["ci"]
        table.add_row(row["name"], str(row["n"]), f"{row['failure']:.2f}", f"{row['rest_failure']:.2f}",
                      f"{low:+.2f} .. {high:+.2f}")
    return table


def _comparison_table(comparison: dict) -> Table:
    table = Table(title=f"{comparison['parent']} -> {comparison['child']} on the same validation split")
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, before in comparison["before"].items():
        table.add_row(key, f"{before:.4f}", f"{comparison['after'][key]:.4f}", f"{comparison['delta'][key]:+.4f}")
    return table
