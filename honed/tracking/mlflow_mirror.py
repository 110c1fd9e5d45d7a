"""Every ledger row as an MLflow run, nested as the step tree is (``mlflow.parentRunId``), with its files.

``--log mlflow`` on a training run logs its epochs live (``loggers.MlflowLogger``); this mirror covers the
rest of the ledger: workflow steps, analyses, TTA, ensembles, exports, tune trials. It is idempotent: a row's
MLflow run is found again by its ``honed.run`` tag (so a run the logger created is completed, not doubled),
and a row already mirrored at its last update (``honed.updated``) is skipped. Artifacts: the row folder's
figures and small records (curves, confusion, analysis figures, model card, config) and, for an export, the
whole bundle. The store is the one the logger uses (``MLFLOW_TRACKING_URI``, else ``WORKSPACE/mlflow.db``).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from honed.tracking.ledger import Ledger, RunRecord
from honed.tracking.loggers import MAX_PARAM_LENGTH, flatten, mlflow_store

ARTIFACT_SUFFIXES = (".png", ".md", ".yaml", ".csv", ".json", ".html")  # figures, cards, records: not weights
MAX_ARTIFACT_BYTES = 20 << 20  # a record bigger than this (a huge predictions CSV) stays in the run folder
_STATUS = {"done": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
PARENT_TAG = "mlflow.parentRunId"  # the tag MLflow's UI nests runs by


def mirror_ledger(workspace: str | Path, *, names: Iterable[str] | None = None) -> dict[str, str]:
    """Mirror the ledger's rows (``names`` and their ancestors, or all) into MLflow; ``{row name: run id}``."""
    workspace = Path(workspace)
    with Ledger(workspace) as ledger:
        records = ledger.runs()
    by_name = {r.name: r for r in records}
    wanted = set(by_name) if names is None else _with_ancestors(set(names), by_name)
    client, experiment_id = mlflow_store(workspace)
    known = _known_runs(client, experiment_id)
    ids: dict[str, str] = {}

    def visit(record: RunRecord, path: tuple[str, ...]) -> str:
        if record.name in ids:
            return ids[record.name]
        parent = by_name.get(record.parent or "")
        parent_id = visit(parent, path + (record.name,)) if parent is not None and parent.name not in path else None
        ids[record.name] = _mirror_row(client, experiment_id, workspace, record, known.get(record.name), parent_id)
        return ids[record.name]

    for record in records:  # oldest first; parents are visited before their children
        if record.name in wanted:
            visit(record, ())
    return {name: run_id for name, run_id in ids.items() if name in wanted}


def _with_ancestors(names: set[str], by_name: dict[str, RunRecord]) -> set[str]:
    found = set()
    for name in names:
        while name in by_name and name not in found:
            found.add(name)
            name = by_name[name].parent or ""
    return found


def _known_runs(client, experiment_id: str) -> dict[str, Any]:
    """The experiment's runs by their ``honed.run`` tag (the oldest when a name was logged twice)."""
    runs: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token, order_by=["start_time DESC"])
        for run in page:
            name = run.data.tags.get("honed.run")
            if name:
                runs[name] = run
        token = page.token
        if not token:
            return runs


def _mirror_row(client, experiment_id: str, workspace: Path, record: RunRecord, run, parent_id: str | None) -> str:
    if run is not None and run.data.tags.get("honed.updated") == record.updated \
            and run.data.tags.get(PARENT_TAG) == parent_id:
        return run.info.run_id  # mirrored at its last update already
    folder = workspace / record.path if record.path else None
    created = run is None
    if created:
        run = client.create_run(experiment_id, run_name=record.name, start_time=_millis(record.created),
                                tags={"honed.run": record.name})
    run_id = run.info.run_id
    tags = {"honed.kind": record.kind, "honed.status": record.status, "honed.parent": record.parent or "",
            "honed.change": record.change[:5000], "honed.model": record.model, "honed.metric": record.metric,
            "honed.updated": record.updated}
    if parent_id:
        tags[PARENT_TAG] = parent_id
    if folder is not None:
        tags["honed.run_dir"] = str(folder.resolve())
    from mlflow.entities import Metric, Param, RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v])
    if created:
        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in _params(folder).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=params[i:i + 100])
        _log_history(client, run_id, folder)
    now = _millis(record.updated)
    values = {**_numbers(record.metrics), **({"score": record.score} if record.score is not None else {})}
    if folder is not None and (folder / "metrics.csv").is_file():  # the epochs hold the plain names
        values = {f"final/{k}": v for k, v in values.items()}
    metrics = [Metric(k, v, now, 0) for k, v in values.items()]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    _log_artifacts(client, run_id, record, folder)
    if record.status in _STATUS:
        client.set_terminated(run_id, status=_STATUS[record.status],
                              end_time=_millis(record.created) + int(record.duration_s * 1000))
    return run_id


def _params(folder: Path | None) -> dict[str, Any]:
    """The row's config (a run folder's config.yaml), flattened; none for rows without one."""
    import yaml

    config = folder / "config.yaml" if folder is not None else None
    if config is None or not config.is_file():
        return {}
    raw = yaml.safe_load(config.read_text()) or {}
    return flatten(raw) if isinstance(raw, dict) else {}


def _log_history(client, run_id: str, folder: Path | None) -> None:
    """metrics.csv's epochs (step = epoch), for a run the training logger did not follow live."""
    import pandas as pd
    from mlflow.entities import Metric

    path = folder / "metrics.csv" if folder is not None else None
    if path is None or not path.is_file():
        return
    metrics = []
    for row in pd.read_csv(path).to_dict(orient="records"):
        step = int(row.get("epoch", 0) or 0)
        metrics += [Metric(k, v, 0, step) for k, v in _numbers(row).items() if k != "epoch"]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def _log_artifacts(client, run_id: str, record: RunRecord, folder: Path | None) -> None:
    if folder is None or not folder.exists():
        return
    if record.kind == "export" and folder.is_dir():  # the bundle itself: what `honed predict` takes
        client.log_artifacts(run_id, str(folder), artifact_path=folder.name)
        return
    if folder.is_file():
        client.log_artifact(run_id, str(folder))
        return
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in ARTIFACT_SUFFIXES and path.stat().st_size <= MAX_ARTIFACT_BYTES:
            client.log_artifact(run_id, str(path))


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _millis(stamp: str) -> int:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0
