"""Logging integrations users already run, beside honed's own ledger: TensorBoard event files and MLflow runs.

Each logger has the same three methods, called by ``honed.train`` on rank 0: ``start(config, run_dir)`` once
the run folder exists (``config`` is any :class:`RunRecord`, such as ``honed.config.RunConfig``: tracking sits
below the config and reads it only through that protocol), ``log_epoch(row, step)`` after each epoch (the row ``metrics.csv`` gets), and
``finish(metrics, status)`` at the end (status ``done``) or on failure (``failed`` / ``interrupted``).
The libraries are imported only when asked for (``--log``); they come with ``pip install honed[log]``.
Loggers are registered by name in ``LOGGERS`` (the ``--log`` names).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import yaml

from honed.errors import HonedError
from honed.registry import Registry
from honed.tracking.atomic import write_json

log = logging.getLogger("honed")

INSTALL_HINT = "pip install honed[log]"
TENSORBOARD_DIR = "tensorboard"  # inside the run folder: `tensorboard --logdir <workspace>` shows every run
MLFLOW_FILE = "mlflow.json"  # inside the run folder: the MLflow run it logs to, so a resume continues it
MLFLOW_DB = "mlflow.db"  # the default store, in the workspace: `mlflow ui --backend-store-uri sqlite:///...`
MLFLOW_ARTIFACTS = "mlruns"  # the default artifact root, in the workspace
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value (since 2.x)
_MLFLOW_STATUS = {"done": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class RunRecord(Protocol):
    """What a logger reads of a run's config (``honed.config.RunConfig`` has it)."""

    name: str
    workspace: str
    parent: str
    change: str

    def to_dict(self) -> dict[str, Any]: ...


class RunLogger(Protocol):
    def start(self, config: RunRecord, run_dir: Path) -> None: ...
    def log_epoch(self, row: dict[str, Any], step: int) -> None: ...
    def finish(self, metrics: dict[str, Any], status: str) -> None: ...


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics row, without the epoch (that is the step)."""
    return {k: float(v) for k, v in row.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardLogger:
    """Scalars per epoch (the metrics.csv columns, under the same names) into ``<run_dir>/tensorboard``;
    the final metrics as ``final/<name>``; the config as text."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise HonedError(f"--log tensorboard needs the tensorboard package: {INSTALL_HINT}") from None
        self._writer_type = SummaryWriter
        self.writer_ = None
        self.hparams_: dict[str, Any] = {}

    def start(self, config: RunRecord, run_dir: Path) -> None:
        self.writer_ = self._writer_type(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))
        self.hparams_ = hparams(config.to_dict())
        text = yaml.safe_dump(config.to_dict(), sort_keys=False)  # the run's config.yaml, as RunConfig writes it
        self.writer_.add_text("config", "```\n" + text + "\n```")

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        for key, value in numbers(row).items():
            self.writer_.add_scalar(key, value, step)
        self.writer_.flush()  # readable while the run goes on

    def finish(self, metrics: dict[str, Any], status: str) -> None:
        if self.writer_ is None:
            return
        step = int(metrics.get("epoch", 0) or 0)
        for key, value in numbers(metrics).items():
            self.writer_.add_scalar(f"final/{key}", value, step)
        if status == "done" and numbers(metrics):  # the HPARAMS tab: this run's settings against its results
            self.writer_.add_hparams(self.hparams_, {f"hparam/{k}": v for k, v in numbers(metrics).items()},
                                     run_name=".", global_step=step)  # ".": in the run's own event folder
        self.writer_.add_text("status", status)
        self.writer_.close()
        self.writer_ = None


class MlflowLogger:
    """One MLflow run per honed run: the flattened config as params, each epoch's metrics (step = epoch),
    the final metrics as ``final/<name>``, tags naming the honed run, its parent and its change.

    The store is ``MLFLOW_TRACKING_URI`` when set, else a local SQLite file in the workspace (``mlflow.db``,
    artifacts under ``mlruns/``): no server. Not MLflow's ``./mlruns`` file store, which MLflow 3 keeps in
    maintenance mode and refuses by default. The experiment is the workspace's name."""

    def __init__(self) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise HonedError(f"--log mlflow needs the mlflow package: {INSTALL_HINT}") from None
        self._client_type = MlflowClient
        self.client_ = None
        self.run_id_: str | None = None

    def start(self, config: RunRecord, run_dir: Path) -> None:
        self.workspace_, self.name_ = Path(config.workspace), config.name
        uri = tracking_uri(self.workspace_)
        self.client_ = self._client_type(tracking_uri=uri)
        previous = _read_json(Path(run_dir) / MLFLOW_FILE)
        if previous and previous.get("tracking_uri") == uri:  # a resumed run continues its MLflow run
            self.run_id_ = previous["run_id"]
            self.client_.update_run(self.run_id_, status="RUNNING")
            return
        experiment_id = _experiment(self.client_, self.workspace_)
        tags = {"honed.run": config.name, "honed.parent": config.parent, "honed.change": config.change,
                "honed.run_dir": str(Path(run_dir).resolve())}
        run = self.client_.create_run(experiment_id, run_name=config.name, tags={k: v for k, v in tags.items() if v})
        self.run_id_ = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in flatten(config.to_dict()).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client_.log_batch(self.run_id_, params=params[i:i + 100])
        write_json(Path(run_dir) / MLFLOW_FILE, {"tracking_uri": uri, "experiment_id": experiment_id,
                                                 "run_id": self.run_id_})

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        self._log_metrics(numbers(row), step)

    def finish(self, metrics: dict[str, Any], status: str) -> None:
        if self.client_ is None:
            return
        self._log_metrics({f"final/{k}": v for k, v in numbers(metrics).items()}, int(metrics.get("epoch", 0) or 0))
        self.client_.set_terminated(self.run_id_, status=_MLFLOW_STATUS.get(status, "FAILED"))
        self.client_ = None
        if status == "done":  # nested under its parent's MLflow run, with its curves and config as artifacts
            from honed.tracking.mlflow_mirror import mirror_ledger

            try:
                mirror_ledger(self.workspace_, names=[self.name_])
            except Exception as error:  # noqa: BLE001 - the run is trained and saved; its nesting can be redone
                log.warning("could not nest the MLflow run of %s under its parent: %s", self.name_, error)

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items() if math.isfinite(v)]
        if metrics:
            self.client_.log_batch(self.run_id_, metrics=metrics)


def tracking_uri(workspace: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the workspace's own SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(workspace).resolve() / MLFLOW_DB}"


def _experiment(client, workspace: Path) -> str:
    """The workspace's experiment (named after it), created with its artifacts in the workspace."""
    workspace = Path(workspace).resolve()
    experiment = client.get_experiment_by_name(workspace.name)
    return experiment.experiment_id if experiment else client.create_experiment(
        workspace.name, artifact_location=None if "MLFLOW_TRACKING_URI" in os.environ
        else (workspace / MLFLOW_ARTIFACTS).as_uri())


def mlflow_store(workspace: Path):
    """(MlflowClient, experiment id) of ``workspace``'s store, as ``--log mlflow`` uses it."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise HonedError(f"--log mlflow needs the mlflow package: {INSTALL_HINT}") from None
    client = MlflowClient(tracking_uri=tracking_uri(workspace))
    return client, _experiment(client, workspace)


class Loggers:
    """The loggers a run asked for, called together. ``finish`` after a failure never raises: a logging
    problem must not hide the error that stopped the run."""

    def __init__(self, members: list[RunLogger] | None = None):
        self.members = list(members or [])

    def start(self, config: RunRecord, run_dir: Path) -> None:
        for member in self.members:
            member.start(config, run_dir)

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        for member in self.members:
            member.log_epoch(row, step)

    def finish(self, metrics: dict[str, Any], status: str) -> None:
        for member in self.members:
            if status == "done":
                member.finish(metrics, status)
                continue
            try:
                member.finish(metrics, status)
            except Exception as error:  # noqa: BLE001 - reported, and the run's own error goes on
                log.warning("could not close the %s log of a %s run: %s", type(member).__name__, status, error)


LOGGERS: Registry[Callable[[], RunLogger]] = Registry("logger")  # registration order: the order --log lists
LOGGERS.register("tensorboard", TensorBoardLogger)
LOGGERS.register("mlflow", MlflowLogger)


def create_loggers(names: list[str]) -> Loggers:
    """Loggers for ``--log`` names (``LOGGERS``); a missing package is a HonedError now, before any training."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise HonedError(f"--log must be one of {', '.join(LOGGERS.names())}, not {unknown[0]!r}")
    return Loggers([LOGGERS[name]() for name in names])


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config as TensorBoard's hparams take it: numbers, text and booleans (lists as text)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flatten(config).items()
            if v is not None}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
