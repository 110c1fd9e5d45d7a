"""``honed tune``: a hyperparameter search; start it on several machines with one --storage and --study."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from honed.cli.json_out import check_log, json_option, log_option, mirror, print_json
from honed.cli.progress import RichReporter, out_console
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.errors import HonedError


def tune(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    trials: Optional[int] = typer.Option(None, min=1, help="Finished trials the study should hold, counting every "
                                         "worker's (a re-run resumes: it runs only the missing ones)."),
    timeout_s: Optional[float] = typer.Option(None, help="Start no new trial after this many seconds."),
    storage: str = typer.Option("", help="Optuna storage URL (default: the --ledger database, else "
                                "sqlite:///WORKSPACE/optuna.sqlite3); "
                                "postgresql://user:pass@host/db for workers on several machines."),
    study: str = typer.Option("", help="Study name that workers join by (default: --name)."),
    name: str = typer.Option("tune", help="Base name: trial N trains the run NAME-tN."),
    parent: str = typer.Option("", help="The run the trials are derived from, recorded in the ledger."),
    model: str = typer.Option("resnet18", help="Any timm model name, or a torchvision one."),
    task: str = typer.Option("classify", help="classify or regress."),
    target: List[str] = typer.Option([], help="Manifest column with a numeric target (regression); repeatable."),
    val_fraction: float = typer.Option(0.2, help="Stratified holdout when the data has no val/ split."),
    pretrained: bool = typer.Option(False, help="Start from ImageNet weights."),
    strategy: str = typer.Option("full", help="Transfer strategy of every trial (see `honed train --help`)."),
    augment: str = typer.Option("", help='Training augmentation policy of every trial, e.g. "hflip,crop:4".'),
    image_size: int = typer.Option(0, help="Input size in pixels (default: the model's)."),
    metric: str = typer.Option("", help="Metric to optimize: accuracy, macro_f1, log_loss, mae or rmse."),
    lr_min: float = typer.Option(1e-4, help="Lowest learning rate tried (drawn log-uniformly)."),
    lr_max: float = typer.Option(1e-2, help="Highest learning rate tried."),
    epochs_min: int = typer.Option(3, min=1, help="Fewest epochs tried."),
    epochs_max: int = typer.Option(10, min=1, help="Most epochs tried."),
    batch_sizes: str = typer.Option("32,64,128", help="Batch sizes tried, comma-separated."),
    dropout_max: float = typer.Option(0.5, help="Highest dropout tried (from 0); 0 keeps dropout off."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N (one worker per GPU: start several)."),
    workers: int = typer.Option(-1, help="DataLoader workers (-1: one per core, up to 8)."),
    seed: int = typer.Option(0, help="Seed of the split (the same for every trial) and of each run."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder holding the runs and the ledger."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    json_out: bool = json_option("the study's trials and best run"),
    log: List[str] = log_option(),
) -> None:
    """Search learning rate, epochs, batch size and dropout; each trial is a run in the ledger."""
    import optuna

    from honed.search import SearchSpace, tune as run_tune

    try:
        sizes = tuple(int(s) for s in batch_sizes.split(",") if s.strip())
    except ValueError:
        raise HonedError(f"--batch-sizes must be integers separated by commas, not {batch_sizes!r}") from None
    space = SearchSpace(lr=(lr_min, lr_max), epochs=(epochs_min, epochs_max), batch_size=sizes,
                        drop_rate=(0.0, dropout_max) if dropout_max > 0 else None)
    base = RunConfig(
        name=name, workspace=str(workspace), parent=parent,
        data=DataConfig(source=data, task=task, target_columns=list(target), val_fraction=val_fraction),
        model=ModelConfig(name=model, pretrained=pretrained, strategy=strategy),
        preprocess=PreprocessConfig(image_size=image_size),
        train=TrainConfig(device=device, workers=workers, metric=metric, seed=seed, augment=augment,
                          log=check_log(log)),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # honed prints one line per trial instead
    console = out_console()
    result = run_tune(base, trials=trials, timeout_s=timeout_s, storage=storage or None, study_name=study,
                      space=space, reporter=RichReporter(console, quiet=quiet or json_out))
    mirror(log, workspace, [r for r in result.trials["run"] if isinstance(r, str) and r])
    if json_out:
        print_json({"study": result.study_name, "storage": result.storage, "best_run": result.best_run,
                    "best_score": result.best_score, "best_params": result.best_params,
                    "trials": result.trials.to_dict(orient="records")})
        return
    table = Table(title=f"study {result.study_name}: {len(result.trials)} trials")
    for column in result.trials.columns:
        table.add_column(column.removeprefix("param_"), justify="left" if column in ("run", "state") else "right")
    for row in result.trials.itertuples(index=False):
        table.add_row(*["" if v is None or v != v else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    console.print(f"best: {result.best_run} ({base.main_metric()} {result.best_score:.4f}) with "
                  + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in result.best_params.items()), soft_wrap=True, highlight=False)
    console.print(f"storage: {result.storage}", soft_wrap=True, highlight=False)
