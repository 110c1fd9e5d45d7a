"""``honed advise``: which transfer strategy fits this data and backbone, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.table import Table

from honed.cli.progress import RichReporter, out_console
from honed.config import DataConfig


def advise(
    data: str = typer.Argument(..., help="A folder of class folders, or a CSV/Parquet manifest."),
    model: str = typer.Option("resnet18", help="Any timm model name, or a torchvision one."),
    pretrained: bool = typer.Option(False, help="Measure with ImageNet weights (pip-shipped or timm's hub)."),
    weights: str = typer.Option("", help="Measure with a local safetensors / PyTorch state dict."),
    image_size: int = typer.Option(0, help="Input size in pixels for the measurement (default: the model's)."),
    task: str = typer.Option("classify", help="classify or regress."),
    path_column: str = typer.Option("path", help="Manifest column with image paths."),
    label_column: str = typer.Option("label", help="Manifest column with class names."),
    target: List[str] = typer.Option([], help="Manifest column with a numeric target (regression); repeatable."),
    sample_per_class: int = typer.Option(0, min=0, help="Images per class in the quick linear probes "
                                         "(0: 200 in all, at least 20 per class)."),
    seed: int = typer.Option(0, help="Seed for the sample and the random-weight network."),
    compare_models: str = typer.Option("", help="Compare pretrained backbones by the same quick linear probe "
                                       "instead, e.g. tf_efficientnet_lite0,tf_efficientnet_lite1 ('auto': the "
                                       "pip-shipped ones); says which features fit best for their cost."),
    as_json: bool = typer.Option(False, "--json", help="Print the advice as JSON instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Measure the data against the backbone and recommend a strategy for `honed train --strategy`."""
    from honed.advise import advise as run_advisor

    console = out_console()
    config = DataConfig(source=data, task=task, path_column=path_column, label_column=label_column,
                        target_columns=list(target))
    if compare_models:
        _compare(console, config, compare_models, image_size=image_size, seed=seed, sample_per_class=sample_per_class,
                 as_json=as_json, quiet=quiet)
        return
    advice = run_advisor(config, model=model, pretrained=pretrained, weights=weights, image_size=image_size,
                         seed=seed, sample_per_class=sample_per_class,
                         reporter=RichReporter(console, quiet=quiet or as_json))
    if as_json:
        console.print_json(json.dumps(advice.to_dict()))
        return
    m = advice.measurements
    table = Table(title=f"{Path(data).name} with {model} at {m.image_size}px")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    for key, value in m.to_dict().items():
        if key not in ("task", "model", "image_size") and value is not None:  # no source statistics: no rows
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"[bold]advice: --strategy {advice.decision}[/]")
    for reason in advice.reasons:
        console.print(f"  - {reason}", soft_wrap=True, highlight=False)


def _compare(console: Console, config: DataConfig, names: str, *, image_size: int, seed: int, sample_per_class: int,
             as_json: bool, quiet: bool) -> None:
    """``--compare-models``: each backbone's probe score and cost, and the choice."""
    from honed.advise.compare import auto_models, compare_backbones
    from honed.data.prepare import prepare_data

    models = auto_models() if names.strip() == "auto" else [n.strip() for n in names.split(",") if n.strip()]
    manifest = prepare_data(config, seed=seed).manifest
    comparison = compare_backbones(manifest, models, image_size=image_size, seed=seed,
                                   sample_per_class=sample_per_class,
                                   reporter=RichReporter(console, quiet=quiet or as_json))
    if as_json:
        console.print_json(json.dumps(comparison.to_dict()))
        return
    table = Table(title=f"{Path(config.source).name}: pretrained features by a linear probe on "
                        f"{comparison.sample} training images")
    for column in ("model", "image size", "probe score", "ms / image", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for s in comparison.scores:
        table.add_row(s.model, str(s.image_size), f"{s.probe:.3f}", f"{s.ms_per_image:.1f}", f"{s.seconds:.1f}")
    console.print(table)
    console.print(f"[bold]advice: --model {comparison.choice} --pretrained[/]")
    for reason in comparison.reasons:
        console.print(f"  - {reason}", soft_wrap=True, highlight=False)
