"""Scan results kept between runs. Every run scans its images with a full decode to find the bad ones (about
2.5 ms a photo on 2 cores: 0.8 s for 398 photos of a few hundred pixels, at every run of a workflow); the same
files give the same answer, so ``cached_scan`` keeps it.

Kept as a ``honed.data.files_memo`` under ``cache_root()/scans``, keyed by the files (path, size and mtime, in
order) and ``max_pixels``; only the bad files are stored. A cache that cannot be read or written costs the
next run a scan, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import os
from pathlib import Path

import numpy as np

from honed.data.decode import DEFAULT_MAX_PIXELS
from honed.data.files_memo import memo_file, read_memo, write_memo
from honed.data.scan import BadFile, ScanResult, scan_images

SCAN_FORMAT = 1  # bump when what counts as a bad file changes: old answers are then not read


def cached_scan(paths: Sequence[str | os.PathLike], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                progress: Callable[[int], None] | None = None, cache_dir: Path | None = None) -> ScanResult:
    """``scan_images(paths)``, read from the last scan of exactly these files when there is one (``progress``
    then hears nothing)."""
    paths = [os.fspath(p) for p in paths]
    file = memo_file("scans", f"honed scan {max_pixels}", paths, cache_dir)
    found = _read(file, paths)
    if found is not None:
        return found
    result = scan_images(paths, max_pixels=max_pixels, progress=progress)
    rows = np.flatnonzero(~result.ok).tolist()  # result.bad lists those rows' files, in the same order
    write_memo(file, {"bad": [[row, b.reason, b.detail] for row, b in zip(rows, result.bad)]},
               version=SCAN_FORMAT, count=len(paths))
    return result


def _read(file: Path, paths: list[str]) -> ScanResult | None:
    stored = read_memo(file, version=SCAN_FORMAT, count=len(paths))
    if stored is None:
        return None
    try:
        rows = [int(row) for row, _, _ in stored["bad"]]
        if any(not 0 <= row < len(paths) for row in rows):
            return None
        bad = [BadFile(path=paths[row], reason=str(reason), detail=str(detail))
               for row, (_, reason, detail) in zip(rows, stored["bad"])]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    ok = np.ones(len(paths), dtype=bool)
    ok[rows] = False
    return ScanResult(ok=ok, bad=bad)
