"""``honed export``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from honed.cli.json_out import json_option, print_json
from honed.cli.progress import out_console


def export(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    formats: List[str] = typer.Option(["bundle"], "--format", "-f",
                                      help="bundle (always written), onnx, torchscript; repeat for several."),
    out: Optional[Path] = typer.Option(None, help="The bundle folder to create (default: RUN-bundle here)."),
    archive: bool = typer.Option(False, "--archive", help="Write one .zip file instead of a folder."),
    no_fuse: bool = typer.Option(False, "--no-fuse", help="Export ONNX/TorchScript without folding BatchNorm."),
    tta: str = typer.Option("", help="Test-time augmentation the bundle applies when predicting, e.g. flip."),
    backbone_only: bool = typer.Option(False, "--backbone-only", help="Write only the trained backbone (no head) "
                                       "as RUN-backbone.safetensors (or --out), a start for `--weights` on other data."),
    no_stats: bool = typer.Option(False, "--no-stats", help="With --backbone-only: skip the feature statistics of "
                                  "the run's training images that `honed advise` compares new data with."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder to look the run up in."),
    json_out: bool = json_option("what was written and the parity checks"),
) -> None:
    """Pack a run as a bundle that `honed predict` and `honed.load` accept, with parity-checked exports (or, with
    --backbone-only, its feature extractor as a weights file for training on other data)."""
    from honed.artifacts.run_folder import find_run

    run_dir = find_run(workspace, run)  # before the export machinery is imported: a typo fails fast
    if backbone_only:
        from honed.export.backbone import export_backbone, export_source_stats
        from honed.cli.progress import RichReporter

        console = out_console()
        path, count = export_backbone(run_dir, out or Path(f"{run_dir.name}-backbone.safetensors"))
        if json_out:
            quiet = RichReporter(console, quiet=True)
            stats = None if no_stats else export_source_stats(run_dir, path, reporter=quiet)[0]
            print_json({"backbone": str(path), "tensors": count, "stats": stats})
            return
        console.print(f"backbone of {run_dir.name} written to {path} ({count} tensors, head left out); "
                      f"use it with `honed train DATA --model ... --weights {path}`", soft_wrap=True, highlight=False)
        if not no_stats:
            _, said = export_source_stats(run_dir, path, reporter=RichReporter(console))
            console.print(said, soft_wrap=True, highlight=False)
        return
    from honed.export.bundle import export_bundle

    report = export_bundle(run_dir, out or Path(f"{run_dir.name}-bundle"), formats=formats, fuse=not no_fuse,
                           tta=tta or None, archive=archive)
    if json_out:
        from dataclasses import asdict

        print_json({"path": str(report.path), "files": list(report.files),
                    "parity": {name: asdict(r) for name, r in (report.parity or {}).items()}})
        return
    console = out_console()
    console.print(f"bundle written to {report.path} ({', '.join(report.files)})", soft_wrap=True, highlight=False)
    if not report.parity:
        return
    table = Table(title=f"parity with the eval-mode original on {report.parity_inputs}")
    for column in ("check", "passed", "max abs diff", "top-1 agreement", "samples"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for name, r in report.parity.items():
        agreement = "-" if r.top1_agreement is None else f"{r.top1_agreement:.4f}"
        table.add_row(name, "yes" if r.passed else "NO", f"{r.max_abs_diff:.2e}", agreement, str(r.num_samples))
    console.print(table)
