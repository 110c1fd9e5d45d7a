"""Answers about a list of files, kept between runs under the cache root and read back only for exactly those
files: the key is ``honed.data.cache.files_digest`` (each file's absolute path, byte size and modification
time, in order) with a header naming the question and its settings, so a changed, added or removed file, or
another question, gets another key and a stale answer is never read. A memo that cannot be read or written
costs the caller its computation, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import os
from pathlib import Path

from honed.data.cache import cache_root, files_digest
from honed.tracking.atomic import write_json


def memo_file(kind: str, header: str, paths: Sequence[str | os.PathLike], cache_dir: Path | None = None) -> Path:
    """Where the answer to ``header`` about ``paths`` is kept: ``<cache_dir or cache_root()/kind>/<key>.json``."""
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / kind
    return folder / f"{files_digest(header, paths)}.json"


def read_memo(file: Path, *, version: int, count: int) -> dict | None:
    """The stored answer, or None when there is none, it is damaged, or it was written for another
    ``version`` of the question or another number of files."""
    try:
        stored = json.loads(file.read_text())
        return stored if stored["version"] == version and stored["count"] == count else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_memo(file: Path, answer: dict, *, version: int, count: int) -> None:
    try:
        write_json(file, {**answer, "version": version, "count": count})
    except (OSError, ValueError):  # a read-only cache, a full disk, a path JSON cannot hold
        pass
