"""``honed analyze``, ``honed improve``, ``honed augment preview`` and ``honed augment list``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.cli.json_out import check_log, json_option, log_option, mirror, print_json
from honed.cli.progress import RichReporter, out_console
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
    json_out: bool = json_option("the analysis"),
    log: List[str] = log_option(),
) -> None:
    """Find a run's weaknesses: worst predictions, confusion, probes, ranked factors and recommended fixes."""
    from honed.analyze import analyze_run
    from honed.artifacts.run_folder import find_run

    console = out_console()
    check_log(log)
    run_dir = find_run(workspace, run)
    analysis = analyze_run(run_dir, tta=tta or None,
                           probes=[p.strip() for p in probes.split(",") if p.strip()] or None, seed=seed,
                           max_images=max_images, reference_images=reference_images, workers=workers,
                           reporter=RichReporter(console, quiet=quiet or json_out))
    if analysis.ledger_name:
        mirror(log, run_dir.parent, [analysis.ledger_name])
    if json_out:
        print_json({**analysis.to_dict(), "folder": str(analysis.folder)})
        return
    summary = analysis.summary
    console.print(f"[bold]{analysis.run}[/]: failure {summary['val_failure']:.3f} on {summary['validation_images']} "
                  f"validation images vs {summary['train_failure']:.3f} on {summary['training_images']} training "
                  f"images (gap: {summary['relative_gap']:.2f} of the headroom)")
    console.print(_factor_table(analysis))
    console.print(_shift_table(analysis.shifts))
    console.print(_slice_table(analysis.slices[:6]))
    _print_label_issues(console, analysis.errors.get("label_issues") or [])
    if analysis.recommendations:
        for rank, rec in enumerate(analysis.recommendations, 1):
            extra = ", ".join(f"{k} {v:g}" for k, v in {**rec.regularization, **rec.training}.items())
            console.print(f"{rank}. {rec.title} (score {rec.score:.2f})"
                          + (f": [bold]{rec.policy}[/]" if rec.policy else "") + (f"; {extra}" if extra else ""))
            if rec.reason:
                console.print(f"   why: {escape(rec.reason)}")
        console.print(f"`honed improve {analysis.run}` checks the top {min(3, len(analysis.recommendations))} by short "
                      "fine-tunes from this run and continues with the one that helps")
    else:
        console.print("no significant weakness found")
    _print_regularization_checks(console, analysis)
    from honed.analyze.calibration_report import summary_rows

    for row in summary_rows(analysis.calibration):  # ECE and NLL before -> after the run's temperature
        console.print(f"calibration ({analysis.calibration['status']}, T {analysis.calibration['temperature']:.3f}) "
                      f"on {row[0]}, {row[1]} images: ECE {row[2]}, NLL {row[3]}", highlight=False)
    console.print(f"saved to {analysis.folder}" + (f"; ledger row {analysis.ledger_name}" if analysis.ledger_name
                                                    else ""))


def _print_label_issues(console: Console, doubtful: list[dict], shown: int = 5) -> None:
    """Mistakes whose label is doubtful (``honed.analyze.mistakes.label_issues``): labelling questions."""
    if doubtful:
        listed = ", ".join(f"{Path(r['path']).name} ({r['given']} -> {r['suggested']})" for r in doubtful[:shown])
        console.print(f"{len(doubtful)} validation images have a doubtful label (cleanlab on this run's predictions): "
                      f"{escape(listed)}{' ...' if len(doubtful) > shown else ''}; check their labels rather than "
                      "augment for them (`honed data check --label-issues` for the training images)")


def improve(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    augment: str = typer.Option("", help="Augmentation to add to the run's policy, e.g. rotate:30 (default: the "
                                "analysis's recommendation)."),
    dropout: Optional[float] = typer.Option(None, help="Dropout before the classifier (default: recommended or "
                                            "the run's)."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (default: recommended or the run's)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs (default: the run's)."),
    image_size: Optional[int] = typer.Option(None, min=16, max=1024, help="Input side in pixels (default: "
                                             "recommended or the run's)."),
    name: str = typer.Option("", help="Name of the new run (default: RUN-improved, made unique)."),
    check: int = typer.Option(3, min=1, max=6, help="Recommendations checked by short fine-tunes before one is "
                              "applied (recommended fixes only)."),
    workspace: Path = WORKSPACE,
    quiet: bool = QUIET,
    json_out: bool = json_option("the comparison"),
    log: List[str] = log_option(),
) -> None:
    """Train a child of RUN with the fix its analysis recommends (checked first), or the changes given; compare."""
    from honed.analyze import improve_run
    from honed.artifacts.run_folder import find_run

    console = out_console()
    check_log(log)
    reporter = RichReporter(console, quiet=quiet or json_out)
    result, comparison = improve_run(find_run(workspace, run), augment=augment or None, dropout=dropout,
                                     weight_decay=weight_decay, epochs=epochs, name=name, reporter=reporter,
                                     check=check, image_size=image_size)
    mirror(log, result.run_dir.parent, [result.name])
    if json_out:
        print_json({"run_dir": str(result.run_dir), **comparison})
        return
    if "candidates" in comparison:
        console.print(_candidate_table(comparison))
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
    json_out: bool = json_option("where the grid was written"),
) -> None:
    """A PNG grid: each row an image from DATA, then augmented draws, as training would see them."""
    from honed.analyze.source import sample_images
    from honed.augment import preview_grid

    images = sample_images(data, n, image_size=image_size, seed=seed, path_column=path_column,
                           label_column=label_column)
    written = preview_grid(images, augment, out, rows=len(images), draws=draws, seed=seed)
    if json_out:
        print_json({"written": str(written), "images": len(images), "draws": draws, "augment": augment})
        return
    out_console().print(f"{len(images)} images x {draws} draws of {augment!r} written to {written}")


@augment_app.command("list")
def list_(pattern: str = typer.Argument("*", help='Names to show, with wildcards, e.g. "*flip".'),
          json_out: bool = json_option("the augmentations")) -> None:
    """The registered augmentations with their default strength and probability."""
    from honed.augment import AUGMENTATIONS

    names = sorted(AUGMENTATIONS.names(pattern))
    if not names:
        raise HonedError(f"no augmentation matches {pattern!r}: see `honed augment list`")
    if json_out:
        print_json([{"name": n, "strength": AUGMENTATIONS[n].default_strength, "p": AUGMENTATIONS[n].default_p,
                     "help": AUGMENTATIONS[n].help} for n in names])
        return
    table = Table(title=escape("augmentations (policy syntax: name[:strength][@probability], comma-separated)"))
    for column in ("name", "strength", "p", "what it does"):
        table.add_column(column, justify="right" if column in ("strength", "p") else "left")
    for name in names:
        spec = AUGMENTATIONS[name]
        table.add_row(name, f"{spec.default_strength:g}", f"{spec.default_p:g}", spec.help)
    out_console().print(table)


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


def _shift_table(shifts: dict) -> Table:
    table = Table(title="shifts between training and validation images: validation transformed back, training "
                        "made so")
    for column in ("shift", "failure", "back", "training made so", "statistics matched", "share of gap", "95% CI",
                   "measured by"):
        table.add_column(column, justify="left" if column in ("shift", "measured by") else "right")
    for row in shifts.get("candidates", [])[:6]:
        mark = "[bold]" if row["significant"] else ""
        table.add_row(f"{mark}{escape(row['name'])}", f"{row['val_failure']:.3f}", f"{row['back_failure']:.3f}",
                      f"{row['simulated_failure']:.3f}", f"{row.get('statistics_explained', 0.0):.0%}",
                      f"{row['share_of_gap']:.0%}", f"{row['ci'][0]:+.3f} .. {row['ci'][1]:+.3f}",
                      row.get("measured_by", "transformed back") if row["significant"] else "")
    return table


def _candidate_table(comparison: dict) -> Table:
    table = Table(title=f"fixes checked by {comparison['check_epochs']}-epoch fine-tunes (parent "
                        f"{comparison['parent_score']:.4f})")
    for column in ("fix", "check run", "score", "kept"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for c in comparison["candidates"]:
        table.add_row(c["group"], c["check_run"], f"{c['check_score']:.4f}", "yes" if c["group"] == comparison["kept"]
                      else "")
    return table


def _comparison_table(comparison: dict) -> Table:
    table = Table(title=f"{comparison['parent']} -> {comparison['child']} on the same validation split")
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, before in comparison["before"].items():
        table.add_row(key, f"{before:.4f}", f"{comparison['after'][key]:.4f}", f"{comparison['delta'][key]:+.4f}")
    return table
