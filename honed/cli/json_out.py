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
