"""Scan results kept between runs. Every run scans its images with a full decode to find the bad ones (about
2.5 ms a photo on 2 cores: 0.8 s for 398 photos of a few hundred pixels, at every run of a workflow); the same
files give the same answer, so ``cached_scan`` keeps it.

The key is that of the decoded cache (``honed.data.cache.files_digest``): each file's absolute path, byte size
and modification time, in order, with ``max_pixels`` and ``SCAN_FORMAT``. A changed, added or removed file gives
a new key, so a stale answer is never read. Only the bad files are stored, as ``<key>.json`` under
``cache_root()/scans``; a cache that cannot be read or written costs the next run a scan, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import json
import os
from pathlib import Path

import numpy as np

from honed.data.cache import cache_root, files_digest
from honed.data.decode import DEFAULT_MAX_PIXELS
from honed.data.scan import BadFile, ScanResult, scan_images
from honed.tracking.atomic import write_json

SCAN_FORMAT = 1  # bump when what counts as a bad file changes: old answers then get new keys


def cached_scan(paths: Sequence[str | os.PathLike], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                progress: Callable[[int], None] | None = None, cache_dir: Path | None = None) -> ScanResult:
    """``scan_images(paths)``, read from the last scan of exactly these files when there is one (``progress``
    then hears nothing)."""
    paths = [os.fspath(p) for p in paths]
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "scans"
    file = folder / f"{files_digest(f'honed scan {SCAN_FORMAT} {max_pixels}', paths)}.json"
    found = _read(file, paths)
    if found is not None:
        return found
    result = scan_images(paths, max_pixels=max_pixels, progress=progress)
    rows = np.flatnonzero(~result.ok).tolist()  # result.bad lists those rows' files, in the same order
    try:
        write_json(file, {"format": SCAN_FORMAT, "count": len(paths),
                          "bad": [[row, b.reason, b.detail] for row, b in zip(rows, result.bad)]})
    except (OSError, ValueError):  # read-only cache, a full disk, a path JSON cannot hold
        pass
    return result


def _read(file: Path, paths: list[str]) -> ScanResult | None:
    try:
        stored = json.loads(file.read_text())
        if stored["format"] != SCAN_FORMAT or stored["count"] != len(paths):
            return None
        rows = [int(row) for row, _, _ in stored["bad"]]
        if any(not 0 <= row < len(paths) for row in rows):
            return None
        bad = [BadFile(path=paths[row], reason=str(reason), detail=str(detail))
               for row, (_, reason, detail) in zip(rows, stored["bad"])]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    ok = np.ones(len(paths), dtype=bool)
    ok[rows] = False
    return ScanResult(ok=ok, bad=bad)
