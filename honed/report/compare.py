"""Two runs side by side: the config keys that differ and the best-epoch metrics with their delta.

Config keys are flattened to dotted paths (``train.lr``), so a change deep in a section reads as one line.
Metrics come from the epoch with the best main metric in ``metrics.csv`` (what the run's best weights
scored), plus the ledger's test metrics; a run without per-epoch history (an ensemble) uses its ledger row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER, best_epoch_row
from honed.tracking.ledger import Ledger, RunRecord, has_ledger
from honed.artifacts.run_folder import CONFIG_FILE, METRICS_FILE
from honed.tasks import get_task

NOT_METRICS = ("epoch", "lr", "seconds")  # per-epoch bookkeeping in metrics.csv, not scores


@dataclass
class ConfigChange:
    key: str  # dotted path, e.g. "train.lr"
    a: Any  # None when the key is absent from run A
    b: Any


@dataclass
class MetricChange:
    name: str
    a: float | None  # None when run A did not measure it
    b: float | None
    delta: float | None  # b - a, None unless both were measured
    better: str  # "a", "b", "" (equal, unknown direction or not comparable)


@dataclass
class RunComparison:
    a: str
    b: str
    metric: str  # run A's main metric
    best_epoch: dict[str, int | None]  # run name -> the epoch the metrics are from (None: from the ledger)
    config: list[ConfigChange]  # only the keys that differ
    metrics: list[MetricChange]  # main metric first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def config_differences(a: dict[str, Any], b: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> list[ConfigChange]:
    """The flattened keys whose values differ (or exist on one side only), in key order."""
    flat_a, flat_b = flatten(a), flatten(b)
    keys = sorted(set(flat_a) | set(flat_b))
    return [ConfigChange(k, flat_a.get(k), flat_b.get(k)) for k in keys
            if k not in ignore and (k not in flat_a or k not in flat_b or flat_a[k] != flat_b[k])]


def compare_runs(run_a: Path, run_b: Path, *, ignore: tuple[str, ...] = ()) -> RunComparison:
    """Compare two run folders; ``ignore`` lists flattened config keys to leave out (e.g. ``("name",)``)."""
    run_a, run_b = Path(run_a), Path(run_b)
    config_a, config_b = read_config(run_a), read_config(run_b)
    record_a, record_b = _record(run_a), _record(run_b)
    metric = (record_a.metric if record_a and record_a.metric else main_metric(config_a))
    metrics_a, epoch_a = best_epoch_metrics(run_a, metric, record_a)
    metrics_b, epoch_b = best_epoch_metrics(run_b, metric, record_b)
    names = sorted(set(metrics_a) | set(metrics_b), key=lambda n: (n != metric, n.startswith("test_"), n))
    return RunComparison(
        a=run_a.name, b=run_b.name, metric=metric, best_epoch={run_a.name: epoch_a, run_b.name: epoch_b},
        config=config_differences(config_a, config_b, ignore=ignore),
        metrics=[_metric_change(n, metrics_a.get(n), metrics_b.get(n)) for n in names])


def best_epoch_metrics(run_dir: Path, metric: str, record: RunRecord | None) -> tuple[dict[str, float], int | None]:
    """The metrics at the epoch that scored best on ``metric`` (and that epoch), plus the ledger's test_*."""
    out: dict[str, float] = {}
    epoch = None
    history_path = run_dir / METRICS_FILE
    if history_path.is_file():
        history = pd.read_csv(history_path)
        if metric in history and history[metric].notna().any():
            row = best_epoch_row((r for _, r in history.iterrows() if pd.notna(r[metric])), metric)
            epoch = int(row["epoch"]) if "epoch" in row else int(row.name) + 1
            out = {k: float(v) for k, v in row.items()
                   if k not in NOT_METRICS and isinstance(v, (int, float)) and math.isfinite(float(v))}
    if record is not None:
        extra = {k: float(v) for k, v in record.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        out.update({k: v for k, v in extra.items() if k.startswith("test_") or not out})
    return out, epoch


def _metric_change(name: str, a: float | None, b: float | None) -> MetricChange:
    if a is None or b is None:
        return MetricChange(name, a, b, None, "")
    delta = b - a
    direction = GREATER_IS_BETTER.get(name.removeprefix("test_").removeprefix("val_"))
    if name in ("val_loss", "train_loss", "test_loss"):
        direction = False
    better = "" if direction is None or delta == 0 else ("b" if (delta > 0) == direction else "a")
    return MetricChange(name, a, b, delta, better)


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.yaml as a plain dict; HonedError naming the fix when it is missing or not YAML."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise HonedError(f"{run_dir} is not a honed run (no {CONFIG_FILE}): give a run name or folder, "
                         "see `honed runs`")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise HonedError(f"{path} is not valid YAML ({error}): fix the file or train the run again") from None
    return raw if isinstance(raw, dict) else {}


def _record(run_dir: Path) -> RunRecord | None:
    if not has_ledger(run_dir.parent):
        return None
    with Ledger(run_dir.parent) as ledger:
        return ledger.get(run_dir.name)


def main_metric(config: dict[str, Any]) -> str:
    """The main metric a config.yaml implies (RunConfig.main_metric, without building the config)."""
    train, data = config.get("train") or {}, config.get("data") or {}
    return train.get("metric") or get_task(data.get("task", "classify")).default_metric
