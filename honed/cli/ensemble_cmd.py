"""``honed evaluate`` (with and without TTA), ``honed ensemble``, ``honed bag`` and ``honed boost``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from honed.cli.json_out import check_log, json_option, log_option, mirror, print_json
from honed.cli.progress import RichReporter, out_console
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig

WORKSPACE = typer.Option(Path("honed-runs"), help="Workspace folder holding the runs and the ledger.")


def evaluate(
    run: str = typer.Argument(..., help="A run name (in --workspace) or a run folder."),
    tta: str = typer.Option("flip", help="Test-time views: names or groups (flip, crops, shifts, scales), "
                            "comma-separated; aug:NAME[:STRENGTH][xN] draws views from an augmentation."),
    aggregate: str = typer.Option("mean", help="mean (probabilities), logit (mean logit) or learned (a weight "
                                  "per view, fitted on validation; its validation score is cross-fitted)."),
    split: List[str] = typer.Option(["val", "test"], help="Splits to score (those the run has); repeatable."),
    batch_size: int = typer.Option(64, min=1, help="Images per batch."),
    workers: int = typer.Option(-1, help="Decoding workers (-1: one per core, up to 8)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    folds: int = typer.Option(5, min=2, help="Cross-fitting folds for learned view weights."),
    workspace: Path = WORKSPACE,
    json_out: bool = json_option("the scores"),
) -> None:
    """A run's scores with and without test-time augmentation, and the cost per image of each."""
    import pandas as pd

    from honed.artifacts.run_folder import MANIFEST_FILE, find_run
    from honed.analyze.tta_evaluation import evaluate_tta
    from honed.progress import Phase

    run_dir = find_run(workspace, run)
    saved = run_dir / MANIFEST_FILE  # its absence is evaluate_tta's error to give
    total = int(pd.read_parquet(saved, columns=["split"])["split"].isin(split).sum()) if saved.is_file() else 0
    reporter = RichReporter(out_console(), quiet=json_out)
    with Phase(reporter, f"scoring {total} images with and without TTA", total) as phase:
        result = evaluate_tta(run_dir, views=tta, aggregate=aggregate, splits=split, batch_size=batch_size,
                              workers=workers, device=device, folds=folds, progress=phase)
    frame = result.table()
    if json_out:
        print_json({"run": result.run, "tta": result.setting.describe(), "rows": frame.to_dict(orient="records")})
        return
    frame["tta"] = ["no" if v == "none" else "yes" for v in frame["tta"]]
    frame = frame.rename(columns={"ms_per_image": "ms/image"})
    table = Table(title=f"{result.run}: without and with TTA")
    for column in frame.columns:
        table.add_column(column, justify="left" if column in ("split", "tta") else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console = out_console()
    console.print(table)
    console.print(f"TTA: {result.setting.describe()}", soft_wrap=True, highlight=False)


def ensemble(
    runs: Optional[List[str]] = typer.Argument(None, help="Member runs (names in --workspace or folders)."),
    name: str = typer.Option("", help="Name of the ensemble run (default: ensemble-METHOD, made unique)."),
    method: str = typer.Option("auto", help="soft, hard or weighted (classification); mean or weighted "
                               "(regression); auto: soft or mean."),
    snapshots: str = typer.Option("", help="Ensemble the snapshots of this run (trained with --schedule cyclic)."),
    folds: int = typer.Option(5, min=2, help="Cross-fitting folds over validation rows for weighted voting."),
    seed: int = typer.Option(0, help="Seed of the cross-fitting folds."),
    workspace: Path = WORKSPACE,
    json_out: bool = json_option("the ensemble's scores"),
    log: List[str] = log_option(),
) -> None:
    """Combine runs (or one run's snapshots) into an ensemble run with a diversity report."""
    from honed.ensemble import create_ensemble

    check_log(log)
    result = create_ensemble(runs or [], name=name, method=method, workspace=workspace,
                             snapshots=snapshots or None, folds=folds, seed=seed)
    mirror(log, workspace, [result.name])
    _print_result(result, json_out=json_out)


def bag(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    members: int = typer.Option(5, min=2, help="Members, each trained on a bootstrap sample of the training split."),
    method: str = typer.Option("auto", help="soft or hard (classification), mean (regression); auto: soft or mean."),
    model: str = typer.Option("resnet18", help="Any timm model name, or a torchvision one."),
    epochs: int = typer.Option(5, min=1, help="Training epochs per member."),
    name: str = typer.Option("", help="Name of the bag (members are NAME-b0, NAME-b1, ...)."),
    task: str = typer.Option("classify", help="classify or regress."),
    target: List[str] = typer.Option([], help="Manifest column with a numeric target (regression); repeatable."),
    val_fraction: float = typer.Option(0.2, help="Stratified holdout when the data has no val/ split."),
    pretrained: bool = typer.Option(False, help="Start from ImageNet weights."),
    augment: str = typer.Option("", help="Training augmentation policy, e.g. \"hflip,crop:4\"."),
    image_size: int = typer.Option(0, help="Input size in pixels (default: the model's)."),
    batch_size: int = typer.Option(64, min=1, help="Images per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N (members train one after another)."),
    workers: int = typer.Option(-1, help="DataLoader workers (-1: one per core, up to 8)."),
    seed: int = typer.Option(0, help="Seed of the split and of the bootstrap draws."),
    workspace: Path = WORKSPACE,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    worker: bool = typer.Option(False, "--worker", help="Be one of several processes sharing --workspace (and "
                                "--name): each claims members not yet taken; the last one done builds the bag."),
    resume: bool = typer.Option(False, "--resume", help="With --worker: retake the members of workers that "
                                "stopped (crashed) and continue them; start it after those workers are gone."),
    json_out: bool = json_option("the bag's scores"),
    log: List[str] = log_option(),
) -> None:
    """Bagging: members on bootstrap samples, combined by vote, with the out-of-bag score."""
    from honed.ensemble.bagging import bag as run_bag

    config = _config(data, model=model, epochs=epochs, name=name, task=task, target=target,
                     val_fraction=val_fraction, pretrained=pretrained, augment=augment, image_size=image_size,
                     batch_size=batch_size, lr=lr, device=device, workers=workers, seed=seed, workspace=workspace,
                     log=check_log(log))
    console = out_console()
    if worker or resume:
        _bag_worker(config, console, members=members, method=method, quiet=quiet or json_out, workers=max(workers, 0),
                    resume=resume, json_out=json_out)
        mirror(log, workspace)
        return
    result = run_bag(config, members=members, method=method, reporter=RichReporter(console, quiet=quiet or json_out),
                     workers=max(workers, 0))
    mirror(log, workspace, [result.name, *result.members])
    _print_result(result, console, json_out=json_out)


def _bag_worker(config: RunConfig, console: Console, *, members: int, method: str, quiet: bool, workers: int,
                resume: bool, json_out: bool = False) -> None:
    from honed.ensemble.bagging import bag_worker

    done = bag_worker(config, members=members, method=method, reporter=RichReporter(console, quiet=quiet),
                      workers=workers, resume=resume)
    if json_out:
        print_json({"trained": done.trained, "pending": done.pending, "name": done.name,
                    "ensemble": None if done.ensemble is None else _result_dict(done.ensemble)})
        return
    console.print(f"trained: {', '.join(done.trained) or 'none'}", highlight=False)
    if done.ensemble is not None:
        _print_result(done.ensemble, console)
    elif done.pending:
        console.print(f"still training in other workers: {', '.join(done.pending)}; the last worker to finish "
                      "builds the bag (a crashed worker's members: run again with --resume)", highlight=False)
    else:
        console.print(f"every member is done; another worker is building the bag {done.name}", highlight=False)


def boost(
    data: str = typer.Argument(..., help="A folder of class folders or a CSV/Parquet manifest."),
    rounds: int = typer.Option(5, min=1, help="SAMME: boosting rounds (members); gbm: boosting iterations."),
    method: str = typer.Option("samme", help="samme (AdaBoost with neural members re-sampled by weight) or gbm "
                               "(gradient boosting on a frozen backbone's pooled features, scikit-learn; saved "
                               "as a probe run that predicts and exports, as --strategy probe --head-model gbm)."),
    model: str = typer.Option("resnet18", help="Members' model (samme) or the frozen backbone (gbm)."),
    epochs: int = typer.Option(5, min=1, help="Training epochs per member (samme)."),
    name: str = typer.Option("", help="Name of the ensemble (members are NAME-r0, NAME-r1, ...)."),
    task: str = typer.Option("classify", help="classify or regress (gbm only)."),
    target: List[str] = typer.Option([], help="Manifest column with a numeric target (regression); repeatable."),
    val_fraction: float = typer.Option(0.2, help="Stratified holdout when the data has no val/ split."),
    pretrained: bool = typer.Option(False, help="Start from (gbm: use) ImageNet weights."),
    augment: str = typer.Option("", help="Training augmentation policy (samme)."),
    image_size: int = typer.Option(0, help="Input size in pixels (default: the model's)."),
    batch_size: int = typer.Option(64, min=1, help="Images per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (samme)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(-1, help="DataLoader workers (-1: one per core, up to 8)."),
    seed: int = typer.Option(0, help="Seed of the split and of the re-sampling."),
    workspace: Path = WORKSPACE,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    json_out: bool = json_option("the ensemble's scores"),
    log: List[str] = log_option(),
) -> None:
    """Boosting: AdaBoost (SAMME) with neural members, or gradient boosting on frozen features."""
    from honed.ensemble.boosting import boost as run_boost

    config = _config(data, model=model, epochs=epochs, name=name, task=task, target=target,
                     val_fraction=val_fraction, pretrained=pretrained, augment=augment, image_size=image_size,
                     batch_size=batch_size, lr=lr, device=device, workers=workers, seed=seed, workspace=workspace,
                     log=check_log(log))
    console = out_console()
    result = run_boost(config, rounds=rounds, method=method, reporter=RichReporter(console, quiet=quiet or json_out),
                       workers=max(workers, 0))
    mirror(log, workspace, [result.name, *result.members])
    _print_result(result, console, json_out=json_out)


def _config(data: str, *, model: str, epochs: int, name: str, task: str, target: List[str], val_fraction: float,
            pretrained: bool, augment: str, image_size: int, batch_size: int, lr: float, device: str, workers: int,
            seed: int, workspace: Path, log: List[str] = ()) -> RunConfig:
    return RunConfig(
        name=name, workspace=str(workspace),
        data=DataConfig(source=data, task=task, target_columns=list(target), val_fraction=val_fraction),
        model=ModelConfig(name=model, pretrained=pretrained), preprocess=PreprocessConfig(image_size=image_size),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device, workers=workers, seed=seed,
                          augment=augment, log=list(log)))


def _result_dict(result) -> dict:
    return {"name": result.name, "run_dir": str(result.run_dir), "kind": result.kind,
            "method": result.rule.method if result.rule else "gbm", "metric": result.metric, "score": result.score,
            "metrics": result.metrics, "members": result.members, "member_scores": result.member_scores}


def _print_result(result, console: Console | None = None, *, json_out: bool = False) -> None:
    """Members, the ensemble, and (classification) the majority-vote error against independence."""
    if json_out:
        print_json(_result_dict(result))
        return
    console = console or out_console()
    table = Table(title=f"{result.name}: {result.kind} ensemble, {result.rule.method}" if result.rule else
                  f"{result.name}: gradient boosting on frozen features (a gbm probe run)")
    table.add_column("")
    table.add_column(result.metric, justify="right")
    for member, score in result.member_scores.items():
        table.add_row(member, f"{score:.4f}")
    table.add_row("[bold]ensemble (validation)[/]", f"{result.score:.4f}")
    for key, label in ((f"test_{result.metric}", "ensemble (test)"), (f"oob_{result.metric}", "out of bag")):
        if key in result.metrics:
            table.add_row(label, f"{result.metrics[key]:.4f}")
    console.print(table)
    report = result.diversity
    if report is not None and report.independent_error is not None:
        console.print(f"majority-vote error: measured {report.majority_error:.4f}, if the members erred "
                      f"independently {report.independent_error:.6f} (mean disagreement "
                      f"{_mean_offdiag(report.disagreement):.3f})")
    console.print(f"saved to {result.run_dir} (diversity report: diversity.md, diversity.png)"
                  if report is not None else f"saved to {result.run_dir}")


def _mean_offdiag(matrix: list[list[float]]) -> float:
    values = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v is not None]
    return sum(values) / len(values) if values else 0.0
