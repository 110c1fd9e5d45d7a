"""Scan image files up front, so training skips bad files with their reasons listed, never silently.

Each file is fully decoded through ``honed.data.decode``, the same path training reads with. On Linux the
decoding runs in forked worker processes, so a decoder that crashes in native code (a segfault in a codec
library) kills one worker, not the run: the chunk that worker held is re-run in a child process of its own,
halved until the one file that crashes is found, and that file is listed as ``decoder crashed (signal 11)``.
Elsewhere, or inside a daemonic process (which may not fork children), a thread pool decodes (Pillow releases
the GIL while it decodes) without that protection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
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
    errors = map_files(partial(_decode_error, max_pixels=max_pixels), list(paths), threads=threads,
                       progress=progress, crashed=lambda path, error: (error.reason, error.detail))
    ok = np.array([error is None for error in errors], dtype=bool)
    bad = [
        BadFile(path=str(path), reason=error[0], detail=error[1])
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
    crashed: Callable[[T, DecodeError], R] | None = None,
) -> list[R]:
    """``[function(item) for item in items]`` in parallel, in order, with progress in increments.

    Without ``crashed``: on a thread pool. With it (and where processes can be forked): in worker processes,
    and an item whose ``function`` kills its process gets ``crashed(item, DecodeError("decoder crashed ..."))``
    as its result instead of ending the caller. ``function`` must then be picklable (a module-level function
    or a ``partial`` of one) and return picklable results.
    """
    workers = max(1, threads or default_threads())
    size = max(1, min(CHUNK_SIZE, math.ceil(len(items) / (4 * workers))))  # >= 4 chunks per worker if few items
    bounds = [(start, min(start + size, len(items))) for start in range(0, len(items), size)]
    workers = min(workers, max(1, len(bounds)))
    if crashed is not None and bounds and can_isolate():
        return _map_isolated(function, items, bounds, workers, progress, crashed)
    chunks = [items[start:stop] for start, stop in bounds]
    run_chunk = partial(_run_chunk, function)
    if workers == 1:
        return _collect(map(run_chunk, chunks), progress)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="honed-scan") as pool:
        return _collect(pool.map(run_chunk, chunks), progress)


def can_isolate() -> bool:
    """True where decoding can run in forked processes: Linux (fork is cheap and safe enough there), outside
    daemonic processes (DataLoader workers, pool workers), which may not have children."""
    return sys.platform.startswith("linux") and not multiprocessing.current_process().daemon


def _map_isolated(function: Callable[[T], R], items: Sequence[T], bounds: list[tuple[int, int]], workers: int,
                  progress: Callable[[int], None] | None, crashed: Callable[[T, DecodeError], R]) -> list[R]:
    """The process path of ``map_files``: chunks dealt round-robin to forked workers, each sending a chunk's
    results as it finishes; the chunks a dead worker never sent are then re-run one by one.

    Forked workers inherit the items and loaded modules, so nothing is pickled on the way in; a plain fork
    per worker costs a fraction of a ``ProcessPoolExecutor``'s start and shutdown.
    """
    results: list = [None] * len(items)
    finished: set[int] = set()
    context = multiprocessing.get_context("fork")
    receivers = {}
    children = []
    for worker in range(workers):
        chunks = [(index, items[start:stop]) for index, (start, stop) in enumerate(bounds)][worker::workers]
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_worker, args=(sender, function, chunks), daemon=True)
        child.start()
        sender.close()  # the child's copy stays open; EOF here means the child has ended
        receivers[receiver] = child
        children.append(child)
    try:
        while receivers:
            for receiver in multiprocessing.connection.wait(list(receivers)):
                try:
                    index, outputs = receiver.recv()
                except EOFError:  # finished, or died (segfault, OOM kill) before sending the rest
                    receiver.close()
                    del receivers[receiver]
                    continue
                start, stop = bounds[index]
                results[start:stop] = outputs
                finished.add(index)
                if progress is not None:
                    progress(stop - start)
    finally:
        for receiver in receivers:
            receiver.close()
        for child in children:
            child.join()
    for index, (start, stop) in enumerate(bounds):
        if index not in finished:
            _run_alone(function, items, start, stop, results, context, crashed)
            if progress is not None:
                progress(stop - start)
    return results


def _worker(sender, function: Callable, chunks: list[tuple[int, Sequence]]) -> None:
    for index, chunk in chunks:
        sender.send((index, [function(item) for item in chunk]))
    sender.close()


def _run_alone(function: Callable[[T], R], items: Sequence[T], start: int, stop: int, results: list,
               context, crashed: Callable[[T, DecodeError], R]) -> None:
    """Run ``items[start:stop]`` in a child process of its own; if it dies, halve the range until the one item
    that kills it is found and given ``crashed``'s result. Costs one fork per chunk, log2(chunk) more per crash."""
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_chunk, args=(sender, function, items[start:stop]), daemon=True)
    child.start()
    sender.close()
    try:
        outputs = receiver.recv()
    except EOFError:  # the child died before sending anything
        outputs = None
    finally:
        receiver.close()
        child.join()
    if outputs is not None:
        results[start:stop] = outputs
    elif stop - start == 1:
        results[start] = crashed(items[start], _crash_error(child.exitcode))
    else:
        middle = (start + stop) // 2
        _run_alone(function, items, start, middle, results, context, crashed)
        _run_alone(function, items, middle, stop, results, context, crashed)


def _child_chunk(sender, function: Callable, chunk: Sequence) -> None:
    sender.send([function(item) for item in chunk])
    sender.close()


def _crash_error(exitcode: int | None) -> DecodeError:
    """'decoder crashed (signal 11)' for a child killed by a signal, '(exit code N)' for one that exited."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return DecodeError(f"decoder crashed (signal {-exitcode})", f"{name}: the decoding process was killed")
    return DecodeError(f"decoder crashed (exit code {exitcode})", "the decoding process ended early")


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


def _decode_error(path: str, *, max_pixels: int) -> tuple[str, str] | None:
    """(reason, detail) for a file that does not decode, None for one that does: small and picklable."""
    try:
        decode_image(path, max_pixels=max_pixels)
    except DecodeError as error:
        return (error.reason, error.detail)
    return None
