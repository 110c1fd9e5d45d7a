"""Run folders in a workspace and their rows in the ledger.

Protocol: a run's files are written atomically first, then its ledger row is upserted, so the ledger
never points at a file that is not complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch.distributed as dist

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.tracking.atomic import atomic_path, is_temp_name, write_json, write_text
from honed.tracking.ledger import LEDGER_FILENAME, Ledger, RunRecord, check_name
from honed.tracking.plots import plot_curves

CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"  # task, class names or target names: what a prediction means


def claim_run_dir(workspace: Path, config: RunConfig, *, resume: bool, is_main: bool = True) -> Path:
    """The run's folder: new for a new run (a unique name when none is given), existing for a resume."""
    if resume:
        run_dir = workspace / config.name
        if not (run_dir / CONFIG_FILE).exists():
            raise HonedError(f"no run {config.name!r} to resume in {workspace}: see `honed runs`")
        return run_dir
    if is_main:
        with Ledger(workspace) as ledger:
            if not config.name:
                config.name = ledger.new_name(config.model.name.replace("/", "-"))
            check_name(config.name)
            _reclaim_abandoned_start(workspace, config.name, ledger)
            if ledger.get(config.name) is not None or (workspace / config.name).exists():
                raise HonedError(f"run {config.name!r} already exists in {workspace}: choose another --name, "
                                 f"or continue it with --resume {config.name}")
    if dist.is_initialized():  # every rank must use the name rank 0 chose
        box = [config.name]
        dist.broadcast_object_list(box, src=0)
        config.name = box[0]
    run_dir = workspace / config.name
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def _reclaim_abandoned_start(workspace: Path, name: str, ledger: Ledger) -> None:
    """A run killed (or failed) before it wrote its config leaves a folder that can neither be resumed (no
    config) nor started again (the name is taken). Such a folder - no config, no ledger row, nothing in it but
    what a start writes first - is taken back, so the same command simply starts the run again."""
    folder = workspace / name
    if not folder.is_dir() or (folder / CONFIG_FILE).exists() or ledger.get(name) is not None:
        return
    if all(is_temp_name(p.name) or p.name == "advice.json" for p in folder.iterdir()):
        shutil.rmtree(folder)


def release_unstarted(workspace: Path, name: str) -> None:
    """Give back the folder of a run that failed before it started (bad data, unknown model): nothing in it is
    worth keeping, and leaving it would make the corrected command fail with 'already exists'."""
    if name and (workspace / LEDGER_FILENAME).exists():
        with Ledger(workspace) as ledger:
            _reclaim_abandoned_start(workspace, name, ledger)


def start(workspace: Path, run_dir: Path, config: RunConfig, manifest: Manifest, bad_files: pd.DataFrame,
          metric: str, *, resumed: bool) -> None:
    """Write what reproduces the run (config, the exact split, skipped files), then its ledger row."""
    if not resumed:
        write_text(run_dir / CONFIG_FILE, config.to_yaml())
        write_json(run_dir / LABELS_FILE, {"task": manifest.task, "classes": manifest.classes,
                                           "target_columns": manifest.target_columns})
        columns = [c for c in manifest.frame.columns if c not in ("origin", "index")]
        save_table(run_dir / "manifest.parquet", manifest.frame[columns])
        if len(bad_files):
            with atomic_path(run_dir / "bad_files.csv") as tmp:
                bad_files.to_csv(tmp, index=False)
    record(workspace, run_dir, config, manifest, metric, {}, status="running", duration_s=0.0)


def record(workspace: Path, run_dir: Path, config: RunConfig, manifest: Manifest, metric: str,
           metrics: dict, *, status: str, duration_s: float) -> None:
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    with Ledger(workspace) as ledger:
        ledger.upsert(RunRecord(
            name=config.name, parent=config.parent or None, change=config.change, kind="train", status=status,
            task=config.data.task, model=config.model.name, data_fingerprint=manifest.fingerprint(),
            metric=metric, score=clean.get(metric), greater_is_better=GREATER_IS_BETTER[metric], metrics=clean,
            duration_s=duration_s, path=run_dir.name))


def mark(workspace: Path, run_dir: Path, status: str) -> None:
    from dataclasses import replace

    with Ledger(workspace) as ledger:
        current = ledger.get(run_dir.name)
        if current is not None:
            ledger.upsert(replace(current, status=status))


def save_table(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def save_predictions(path: Path, predictions: pd.DataFrame) -> None:
    save_table(path, predictions)


def save_history(run_dir: Path, history: pd.DataFrame, metric: str) -> None:
    with atomic_path(run_dir / "metrics.csv") as tmp:
        history.to_csv(tmp, index=False)
    plot_curves(history, metric, run_dir / "curves.png")


def find_run(workspace: Path, name_or_path: str) -> Path:
    """A run folder from its name in the workspace or a path to it."""
    candidates = [Path(name_or_path), workspace / name_or_path]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).exists():
            return candidate
    raise HonedError(f"no run {name_or_path!r} (looked in {workspace}): see `honed runs`")
