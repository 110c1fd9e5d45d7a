"""Scan image files up front, so training skips bad files with their reasons listed, never silently.

Each file is fully decoded through ``honed.data.decode``, the same path training reads with, on a thread pool
(Pillow releases the GIL while it decodes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
import math
import os
from typing import TypeVar

import numpy as np

from honed.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image

T = TypeVar("T")
R = TypeVar("R")

CHUNK_SIZE = 256  # most files per task: amortises the pool, keeps progress smooth


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str  # short and stable, from DecodeError.reason: "truncated", "zero bytes", ...
    detail: str = ""  # the decoder's own words, for debugging


@dataclass
class ScanResult:
    ok: np.ndarray  # bool, one per input path, in input order
    bad: list[BadFile]  # the files where ok is False, in input order

    def reasons(self) -> dict[str, int]:
        """How many bad files per reason, most common first."""
        counts: dict[str, int] = {}
        for bad in self.bad:
            counts[bad.reason] = counts.get(bad.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def scan_images(
    paths: Sequence[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Decode every file; report which decode and, for the rest, why not.

    ``threads`` defaults to the CPUs this process may use. ``progress`` is called from the calling thread
    with the number of files just finished (an increment, as rich's ``Progress.advance`` takes).
    """
    errors = map_files(partial(_decode_error, max_pixels=max_pixels), paths, threads=threads, progress=progress)
    ok = np.array([error is None for error in errors], dtype=bool)
    bad = [
        BadFile(path=str(path), reason=error.reason, detail=error.detail)
        for path, error in zip(paths, errors)
        if error is not None
    ]
    return ScanResult(ok=ok, bad=bad)


def map_files(
    function: Callable[[T], R],
    items: Sequence[T],
    *,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[R]:
    """``[function(item) for item in items]`` on a thread pool, in order, with progress in increments."""
    workers = max(1, threads or default_threads())
    size = max(1, min(CHUNK_SIZE, math.ceil(len(items) / (4 * workers))))  # >= 4 chunks per worker if few items
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    run_chunk = partial(_run_chunk, function)
    workers = min(workers, max(1, len(chunks)))
    if workers == 1:
        return _collect(map(run_chunk, chunks), progress)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="honed-scan") as pool:
        return _collect(pool.map(run_chunk, chunks), progress)


def default_threads() -> int:
    """The CPUs this process may run on (respects affinity and container limits where the OS reports them)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _collect(chunk_outputs: Iterable[list[R]], progress: Callable[[int], None] | None) -> list[R]:
    results: list[R] = []
    for outputs in chunk_outputs:
        results.extend(outputs)
        if progress is not None:
            progress(len(outputs))
    return results


def _run_chunk(function: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [function(item) for item in chunk]


def _decode_error(path: str, *, max_pixels: int) -> DecodeError | None:
    try:
        decode_image(path, max_pixels=max_pixels)
    except DecodeError as error:
        return error
    return None
