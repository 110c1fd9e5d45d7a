"""A run folder: the names of its files, the ``RunFolder`` type that reads them, and the writers that keep
it and its ledger row in step.

Protocol: a run's files are written atomically first, then its ledger row is upserted, so the ledger
never points at a file that is not complete.

Layout of ``WORKSPACE/NAME/``::

    config.yaml            the resolved RunConfig (reruns it)
    labels.json            task, class names or target names: what an output means
    manifest.parquet       the exact split every image was in
    metrics.csv, curves.png    one row per epoch, and its plot
    best.safetensors       the best epoch's weights (last.*, state.json, checkpoints/: resume, see
                           honed.training.checkpoint)
    predictions_val.parquet, predictions_test.parquet   per-image outputs of the best weights
    bad_files.csv          images left out because they did not decode
    advice.json            why the transfer strategy was chosen (``strategy: auto``)
    probe.json             a probe run's head (honed.training.probe)
    ensemble.json          instead of weights: an ensemble's members and rule (honed.ensemble)
    calibration.json       a classifier's temperature, fitted on its validation outputs (honed.combine.calibration)
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import torch.distributed as dist

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.data.prepare import prepare_data
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.tracking.atomic import atomic_path, is_temp_name, write_json, write_text
from honed.tracking.ledger import Ledger, RunRecord, check_name, has_ledger, locate_run
from honed.tracking.plots import plot_curves
from honed.tasks import get_task

CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"  # task, class names or target names: what a prediction means
MANIFEST_FILE = "manifest.parquet"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
BEST_WEIGHTS = "best.safetensors"
VAL_PREDICTIONS = "predictions_val.parquet"
TEST_PREDICTIONS = "predictions_test.parquet"
BAD_FILES = "bad_files.csv"
ADVICE_FILE = "advice.json"
PROBE_FILE = "probe.json"
ENSEMBLE_FILE = "ensemble.json"
CALIBRATION_FILE = "calibration.json"  # the temperature that calibrates a classifier's probabilities
REFIT_FILE = "refit.json"  # a refit on train + val: the run it refits, that run's validation score, the epochs
WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors$")  # a weights file inside a run folder


@dataclass(frozen=True)
class Labels:
    """What a model's outputs mean: the task and its class names (classify) or target names (regress)."""

    task: str
    classes: list[str]
    target_columns: list[str]

    @property
    def num_outputs(self) -> int:
        return get_task(self.task).num_outputs(self.classes, self.target_columns)

    @property
    def names(self) -> list[str]:
        return get_task(self.task).output_names(self.classes, self.target_columns)

    def to_dict(self) -> dict:
        return {"task": self.task, "classes": self.classes, "target_columns": self.target_columns}


@dataclass(frozen=True)
class RunFolder:
    """A finished (or running) run's folder, read through one type: every reader of a run uses it."""

    path: Path

    @classmethod
    def find(cls, workspace: Path, name_or_path: str | Path) -> "RunFolder":
        return cls(find_run(Path(workspace), str(name_or_path)))

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def is_run(self) -> bool:
        return (self.path / CONFIG_FILE).is_file()

    @property
    def is_ensemble(self) -> bool:
        return (self.path / ENSEMBLE_FILE).is_file()

    def config(self) -> RunConfig:
        return RunConfig.from_yaml(self.path / CONFIG_FILE)

    def labels(self) -> Labels:
        path = self.path / LABELS_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise HonedError(f"{self.path} has no {LABELS_FILE}: is it a honed run folder?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HonedError(f"{path} is damaged ({error}): train the run again") from None
        return Labels(raw["task"], list(raw["classes"]), list(raw["target_columns"]))

    def manifest(self) -> Manifest:
        """The run's exact split. Runs on torchvision datasets store ids, not files: the dataset is reopened
        and must still match the split."""
        config, labels = self.config(), self.labels()
        frame = pd.read_parquet(self.path / MANIFEST_FILE)
        manifest = Manifest(frame=frame, task=labels.task, classes=labels.classes,
                            target_columns=labels.target_columns, name=config.data.source)
        return manifest if Path(frame["path"].iloc[0]).exists() else _in_memory_manifest(config, manifest)

    def history(self) -> pd.DataFrame | None:
        path = self.path / METRICS_FILE
        return pd.read_csv(path) if path.is_file() else None

    def predictions(self, split: str = "val") -> pd.DataFrame | None:
        path = self.path / (VAL_PREDICTIONS if split == "val" else TEST_PREDICTIONS)
        return pd.read_parquet(path) if path.is_file() else None

    def probe_facts(self) -> dict | None:
        path = self.path / PROBE_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def calibration(self) -> dict | None:
        """``calibration.json`` (the temperature and its before/after scores); None for a run without one:
        regression, too few validation images, or trained before honed calibrated."""
        path = self.path / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HonedError(f"{path} is damaged ({error}): delete it to predict uncalibrated") from None
        check_temperature(raw, str(path))
        return raw

    def refit_facts(self) -> dict | None:
        """What a refit on train + val records (``REFIT_FILE``); None for a run selected on validation."""
        path = self.path / REFIT_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def refuse_without_weights(self, action: str) -> None:
        """HonedError when this is a gbm probe run from before gbm heads were refitted at load (no weights, no
        features file): it cannot be ``action`` ("loaded", "exported")."""
        facts = self.probe_facts()
        if facts is not None and not facts.get("weights_written", True):
            raise HonedError(f"run {self.name!r} cannot be {action}: {facts.get('note', '')}; "
                             "train it again (this honed keeps what a gbm head needs to predict)")


def check_temperature(raw: object, where: str) -> float:
    """The temperature of a calibration record (run folder or bundle), which must be a positive finite number."""
    value = raw.get("temperature") if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise HonedError(f"{where}: 'temperature' must be a positive number, not {value!r}")
    return float(value)


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
    if all(is_temp_name(p.name) or p.name == ADVICE_FILE for p in folder.iterdir()):
        shutil.rmtree(folder)


def release_unstarted(workspace: Path, name: str) -> None:
    """Give back the folder of a run that failed before it started (bad data, unknown model): nothing in it is
    worth keeping, and leaving it would make the corrected command fail with 'already exists'."""
    if name and has_ledger(workspace):
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
        save_table(run_dir / MANIFEST_FILE, manifest.frame[columns])
        if len(bad_files):
            with atomic_path(run_dir / BAD_FILES) as tmp:
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
    with atomic_path(run_dir / METRICS_FILE) as tmp:
        history.to_csv(tmp, index=False)
    plot_curves(history, metric, run_dir / CURVES_FILE)


def find_run(workspace: Path, name_or_path: str) -> Path:
    """A run folder from its name in the workspace or a path to it."""
    candidates = [Path(name_or_path), workspace / name_or_path]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).exists():
            return candidate
    located = locate_run(workspace, name_or_path)  # recorded elsewhere (a shared ledger), or not visible here
    if located is not None and (located / CONFIG_FILE).exists():
        return located
    raise HonedError(f"no run {name_or_path!r} (looked in {workspace}): see `honed runs`")


def _in_memory_manifest(config: RunConfig, saved: Manifest) -> Manifest:
    """Runs on torchvision datasets store ids, not files: reopen the dataset and keep the run's split."""
    if not config.data.torchvision_root:
        raise HonedError(f"the images of this run are not files (e.g. {saved.frame['path'].iloc[0]}): honed "
                         "can reopen torchvision datasets only; use a run trained on files")
    manifest = prepare_data(config.data, seed=config.train.seed).manifest
    if list(manifest.frame["path"]) != list(saved.frame["path"]):
        raise HonedError("the torchvision dataset no longer matches the run's split: analysis needs the same data")
    return manifest
