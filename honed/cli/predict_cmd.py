"""``honed predict``."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich.console import Console

from honed.cli.json_out import json_option, print_json
from honed.cli.progress import RichReporter, out_console
from honed.progress import Phase
from honed.errors import HonedError


def predict(
    run: str = typer.Argument(..., help="A run name (in --workspace), a run folder, or a bundle (folder or .zip)."),
    images: List[str] = typer.Argument(..., help="Image files, folders, or CSV files with a path column."),
    out: Path = typer.Option(Path("predictions.csv"), help="Where to write: .csv or .json."),
    top_k: int = typer.Option(1, min=1, help="How many classes per image."),
    batch_size: int = typer.Option(64, min=1, help="Images per batch."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    backend: str = typer.Option("torch", help="torch, or onnx to run a bundle's model.onnx in ONNX Runtime."),
    tta: str = typer.Option("", help="Test-time augmentation views, e.g. flip or flip,crops; 'none' turns a "
                            "bundle's own setting off."),
    no_calibration: bool = typer.Option(False, "--no-calibration", help="Raw probabilities: leave out the "
                                        "temperature fitted on the validation split."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder to look the run up in."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = json_option("where the predictions went and how many failed (the predictions stay in --out)"),
) -> None:
    """Predict new images with a trained run; undecodable files get an error column, not a crash."""
    from honed.artifacts.trained import is_bundle
    from honed.predict import collect_inputs, load
    from honed.predict.sharded import is_distributed_launch
    from honed.tracking.atomic import atomic_path
    from honed.artifacts.run_folder import find_run

    if out.suffix.lower() not in (".csv", ".json"):
        raise HonedError(f"--out must end in .csv or .json, not {out.name!r}")
    model_path = Path(run) if is_bundle(run) else find_run(workspace, run)
    paths = collect_inputs(images)
    console = out_console(stderr=True)
    if is_distributed_launch():  # under torchrun: each rank predicts a slice, rank 0 merges (predict_sharded)
        _predict_sharded(model_path, paths, out, console, quiet=quiet, top_k=top_k, batch_size=batch_size,
                         device=device, backend=backend, tta=tta or None, calibrate=not no_calibration)
        return
    predictor = load(model_path, device=device, backend=backend, tta=tta or None, calibrate=not no_calibration)
    if predictor.task_type.is_classification and not no_calibration and not predictor.calibrated:
        console.print("note: this model has no fitted temperature (trained before honed calibrated, or too few "
                      "validation images): its probabilities are uncalibrated (temperature 1)", highlight=False)
    members = len(getattr(predictor, "members", ()))
    label = f"predicting {len(paths)} images" + (f" with {members} members" if members else "")
    with Phase(RichReporter(console, quiet=quiet), label, len(paths)) as phase:
        frame = predictor.predict(paths, top_k=top_k, batch_size=batch_size, progress=phase)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".json":
            frame.to_json(tmp, orient="records", indent=2)
        else:
            frame.to_csv(tmp, index=False)
    failed = int((frame["error"] != "").sum())
    if json_out:
        print_json({"out": str(out), "predictions": len(frame), "failed": failed})
        return
    console.print(f"{len(frame)} predictions written to {out}" + (f"; {failed} file(s) could not be read "
                                                                   "(see the error column)" if failed else ""))


def _predict_sharded(model_path: Path, paths: List[str], out: Path, console: Console, *, quiet: bool,
                     **options) -> None:
    import os

    from honed.predict.sharded import predict_sharded, shard_bounds

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    start, stop = shard_bounds(len(paths), rank, world)
    reporter = RichReporter(console, quiet=quiet or rank != 0)
    with Phase(reporter, f"predicting (rank 0 of {world})", stop - start) as phase:
        result = predict_sharded(model_path, paths, out, progress=phase, **options)
    if result.out is not None:
        console.print(f"{result.total} predictions by {result.world_size} processes written to {result.out}"
                      + (f"; {result.failed} file(s) could not be read (see the error column)" if result.failed
                         else ""))
