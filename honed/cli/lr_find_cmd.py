"""``honed lr-find``: the learning-rate range test, its suggestion and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from honed.cli.json_out import json_option, print_json
from honed.cli.progress import RichReporter, out_console
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig


def lr_find(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    model: str = typer.Option("resnet18", help="Any timm model name, or a torchvision one."),
    pretrained: bool = typer.Option(False, help="Start from ImageNet weights (pip-shipped or timm's hub)."),
    strategy: str = typer.Option("full", help="Transfer strategy whose parameter groups train: head, partial, "
                                 "gradual, full or scratch."),
    image_size: int = typer.Option(0, help="Input size in pixels (default: the model's)."),
    batch_size: int = typer.Option(64, min=1, help="Images per step."),
    optimizer: str = typer.Option("adamw", help="adamw or sgd."),
    weight_decay: float = typer.Option(0.0, help="Weight decay (not applied to norms and biases)."),
    steps: int = typer.Option(100, min=10, help="Mini-batches over which the learning rate grows."),
    min_lr: float = typer.Option(1e-7, help="Learning rate of the first step."),
    max_lr: float = typer.Option(10.0, help="Learning rate of the last step (the test stops earlier on divergence)."),
    out: Optional[Path] = typer.Option(None, help="Where to write the plot (PNG); default <workspace>/lr_find.png."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder (the plot goes there by default)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(-1, help="DataLoader workers (-1: one per core, up to 8)."),
    seed: int = typer.Option(0, help="Seed for the split, initialisation and shuffling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = json_option("the suggested learning rate"),
) -> None:
    """Find a learning rate: train briefly while it grows exponentially and read the loss curve."""
    from honed.training.lr_find import PLOT_FILE, find_lr, plot_lr_find

    config = RunConfig(
        name="lr-find", workspace=str(workspace), data=DataConfig(source=data),
        model=ModelConfig(name=model, pretrained=pretrained, strategy=strategy),
        preprocess=PreprocessConfig(image_size=image_size),
        train=TrainConfig(batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay, device=device,
                          workers=workers, seed=seed),
    )
    console = out_console()
    result = find_lr(config, reporter=RichReporter(console, quiet=quiet or json_out), min_lr=min_lr, max_lr=max_lr,
                     steps=steps)
    plot = plot_lr_find(result, out or workspace / PLOT_FILE)
    if json_out:
        print_json({"suggested_lr": result.suggested_lr, "min_loss_lr": result.min_loss_lr,
                    "diverged": result.diverged, "last_lr": result.lrs[-1], "plot": str(plot)})
        return
    console.print(f"suggested learning rate: [bold]{result.suggested_lr:.2e}[/] "
                  f"(loss lowest at {result.min_loss_lr:.2e}{', diverged after' if result.diverged else ', up to'} "
                  f"{result.lrs[-1]:.2e})")
    console.print(f"plot: {plot}")
