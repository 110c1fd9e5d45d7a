"""``--json``: one JSON object on stdout, for scripts; everything human-facing stays off stdout."""

from __future__ import annotations

import json
import math
from typing import Any

import typer


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN and infinities as null, numpy scalars as numbers, paths as text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(plain(value), allow_nan=False))


def json_option(what: str = "the result"):
    """``--json``: the same help on every command."""
    return typer.Option(False, "--json", help=f"Print {what} as one JSON object on stdout instead of tables; "
                        "no progress bars.")


def log_option():
    """``--log``: the same help on every command that writes ledger rows."""
    return typer.Option([], "--log", help="Also log to mlflow (each ledger row a run, nested under its parent's, "
                        "with its files; MLFLOW_TRACKING_URI, else the workspace) or tensorboard (training runs' "
                        "event files); repeatable. Needs `pip install honed[log]`.")


def check_log(log: list[str]) -> list[str]:
    """``--log`` names checked before any work: an unknown name or a missing package is one line now."""
    from honed.tracking.loggers import create_loggers

    create_loggers(list(log))
    return list(log)


def mirror(log: list[str], workspace, names: list[str] | None = None) -> None:
    """``--log mlflow``: the rows this command wrote (and their ancestors) mirrored to MLflow."""
    if "mlflow" in log:
        from honed.tracking.mlflow_mirror import mirror_ledger

        mirror_ledger(workspace, names=names)
