"""``honed train`` and ``honed demo``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from honed.cli.json_out import print_json
from honed.cli.progress import RichReporter, metrics_table, out_console
from honed.config import OPTION_FIELDS, RunConfig, TrainConfig, read_mapping, with_options
from honed.errors import HonedError
from honed.artifacts.run_folder import CONFIG_FILE


def train(
    ctx: typer.Context,
    data: Optional[str] = typer.Argument(None, help="A folder of class folders, a CSV/Parquet manifest, or "
                                         "(with --root) a torchvision dataset name."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="A run config in YAML (a run's own "
                                               "config.yaml will do); options given as flags override it."),
    model: str = typer.Option("resnet18", help="Any timm model name, or a torchvision one."),
    epochs: int = typer.Option(5, min=1, help="Training epochs."),
    name: str = typer.Option("", help="Run name (default: the model name, made unique)."),
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder holding runs and the ledger."),
    resume: str = typer.Option("", help="Continue the interrupted run with this name from its last epoch."),
    task: str = typer.Option("classify", help="classify or regress."),
    torchvision: str = typer.Option("", help="A torchvision dataset name, e.g. CIFAR10 (files already under --root)."),
    root: str = typer.Option("", help="Where the torchvision dataset's files are."),
    path_column: str = typer.Option("path", help="Manifest column with image paths."),
    label_column: str = typer.Option("label", help="Manifest column with class names."),
    target: List[str] = typer.Option([], help="Manifest column with a numeric target (regression); repeatable."),
    val_fraction: float = typer.Option(0.2, help="Stratified holdout when the data has no val/ split."),
    folds: int = typer.Option(1, min=1, help="k-fold cross-validation: train one run per fold."),
    strict: bool = typer.Option(False, help="Fail on any undecodable image instead of skipping and listing it."),
    exclude_label_issues: str = typer.Option("", help="Train without the N likeliest label issues (found now, as "
                                             "`honed data check --label-issues` does) or the images a file lists."),
    pretrained: bool = typer.Option(False, help="Start from ImageNet weights (pip-shipped or timm's hub)."),
    weights: str = typer.Option("", help="Start from a local safetensors / PyTorch state dict."),
    strategy: str = typer.Option("full", help="probe | head | partial | gradual | full | scratch, or auto (the "
                                 "advisor picks from the data, see `honed advise`)."),
    unfreeze: int = typer.Option(0, min=0, help="partial / gradual: stages fine-tuned, counted from the head "
                                 "(0: partial 2, gradual all)."),
    head_model: str = typer.Option("", help="probe: logreg, svm or gbm (regression: ridge, svr or gbm); "
                                   "default logreg / ridge. gbm trees are stored as ONNX (no TorchScript)."),
    dropout: float = typer.Option(0.0, help="Dropout before the classifier."),
    head_bn: bool = typer.Option(False, help="Head as BatchNorm1d -> Dropout(--dropout) -> Linear."),
    drop_path: float = typer.Option(0.0, help="Stochastic depth rate (timm's drop_path_rate; timm models only)."),
    swa: bool = typer.Option(False, help="Stochastic weight averaging of the last epochs; kept when it beats "
                             "the best epoch (swa.safetensors)."),
    swa_start: float = typer.Option(0.75, help="--swa: fraction of the epochs done before averaging starts."),
    swa_lr: float = typer.Option(0.0, help="--swa: constant learning rate while averaging (0: the schedule's)."),
    augment: str = typer.Option("", help='Training augmentation policy, e.g. "hflip,rotate:15,color:0.3@0.5".'),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing for classification."),
    patience: int = typer.Option(0, help="Early stopping after this many epochs without improvement; 0: off."),
    cache: str = typer.Option("auto", help="Decoded-image cache: auto (when it fits), on, or off (decode per epoch)."),
    checkpoint_every: int = typer.Option(0, min=0, help="Also checkpoint every N steps inside an epoch, so a "
                                         "killed run resumes from that exact batch (0: at epoch ends only)."),
    deterministic: bool = typer.Option(False, help="Deterministic algorithms: a rerun or a resumed run ends "
                                       "with bit-identical weights (slower on GPU)."),
    image_size: int = typer.Option(0, help="Input size in pixels (default: the model's)."),
    batch_size: int = typer.Option(64, min=1, help="Images per step."),
    optimizer: str = typer.Option("adamw", help="adamw or sgd."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    weight_decay: float = typer.Option(0.0, help="Weight decay (not applied to norms and biases)."),
    schedule: str = typer.Option("cosine", help="cosine, onecycle, constant, or cyclic (snapshot ensembles)."),
    cycles: int = typer.Option(0, help="--schedule cyclic: restarts, a snapshot at each cycle's end; divides --epochs."),
    grad_clip: float = typer.Option(1.0, help="Max gradient norm; 0 disables clipping."),
    precision: str = typer.Option("auto", help="auto (bf16 on CUDA, fp32 on CPU), 32, bf16 or 16."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(-1, help="DataLoader workers (-1: one per core, up to 8)."),
    metric: str = typer.Option("", help="Main metric: accuracy, macro_f1, log_loss, mae or rmse."),
    seed: int = typer.Option(0, help="Seed for splits, initialisation and shuffling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    log: List[str] = typer.Option([], "--log", help="Also log to tensorboard (event files in the run folder) or "
                                  "mlflow (MLFLOW_TRACKING_URI, else the workspace); repeatable. "
                                  "Needs `pip install honed[log]`."),
    json_out: bool = typer.Option(False, "--json", help="Print the final metrics and the run folder as one JSON "
                                  "object on stdout; no progress bars."),
) -> None:
    """Train an image model and save the run in the workspace."""
    if resume:
        from honed.artifacts.run_folder import find_run

        config = RunConfig.from_yaml(find_run(workspace, resume) / CONFIG_FILE)
        config.workspace = str(workspace)
        if log:  # a resumed run may start logging; without --log it keeps its own
            config.train = TrainConfig(**{**config.to_dict()["train"], "log": list(log)})
        _run(config, quiet=quiet, resume=True, json_out=json_out)
        return
    config = RunConfig.from_dict(with_options(read_mapping(config_file) if config_file else {},
                                              _options(ctx, explicit_only=config_file is not None)))
    if not config.data.source:
        raise HonedError("give the data: a folder, a CSV/Parquet manifest, or --torchvision NAME --root DIR")
    if torchvision and not root:
        raise HonedError("--torchvision needs --root: the folder holding the dataset's files")
    if exclude_label_issues:  # an explicit choice: the list is kept in the workspace, the change in the ledger
        from honed.analyze.label_issues import exclusion

        config.data.exclude, config.change = exclusion(config, exclude_label_issues)
    _run(config, quiet=quiet, json_out=json_out)


def _options(ctx: typer.Context, *, explicit_only: bool) -> dict:
    """The command's values as config options (``honed.config.OPTION_FIELDS``); with a config file, only the
    flags given, which override it."""
    given = {name: value for name, value in ctx.params.items() if name in OPTION_FIELDS
             or name == "torchvision"}
    if explicit_only:
        given = {name: value for name, value in given.items() if given_as_flag(ctx, name)}
    torchvision = given.pop("torchvision", "")
    if torchvision:  # the dataset's name is the source; its files are under --root
        given["data"] = torchvision
    if given.get("data") is None:
        given.pop("data", None)
    for name in ("target", "log"):
        if name in given:
            given[name] = list(given[name])
    if "workspace" in given:
        given["workspace"] = str(given["workspace"])
    return given


def given_as_flag(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given (on the command line or by its environment variable), not
    left at its default: only those override a config file. By the source's name, as typer vendors click."""
    return ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")


def _run(config: RunConfig, *, quiet: bool, resume: bool = False, json_out: bool = False) -> None:
    is_main = int(os.environ.get("RANK", "0")) == 0
    console = out_console()
    reporter = RichReporter(console, quiet=quiet or json_out or not is_main)  # --json: stdout holds the JSON only
    if config.data.folds > 1:
        from honed.advise.auto import advice_callbacks, resolve_strategy
        from honed.training.crossval import cross_validate

        config, advice = resolve_strategy(config, reporter=reporter)  # --strategy auto: decided once for the folds
        summary = cross_validate(config, reporter=reporter, callbacks=advice_callbacks(advice))
        if is_main and json_out:
            print_json({"name": config.name, "runs": [str(r.run_dir) for r in summary.folds], "mean": summary.mean,
                        "std": summary.std})
        elif is_main:
            console.print(metrics_table(summary.mean, title=f"{config.name}: mean over {config.data.folds} folds"))
        return
    from honed.advise.auto import train as train_run  # --strategy auto: the advisor decides first

    result = train_run(config, reporter=reporter, resume=resume)
    if is_main and json_out:
        print_json({"name": result.name, "run_dir": str(result.run_dir), "metric": result.metric,
                    "score": result.score, "best_epoch": result.best_epoch, "metrics": result.metrics})
    elif is_main:
        console.print(metrics_table(result.metrics, title=f"{result.name}: best epoch {result.best_epoch}"))
        console.print(f"saved to {result.run_dir}")
