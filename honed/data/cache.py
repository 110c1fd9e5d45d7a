"""A decoded-image cache: every file decoded and resized once, then read as one uint8 memory map.

Decoding JPEGs is the loader's cost; after the first run it is pure waste. ``DecodedCache.build`` runs the one
decoding path (``honed.data.decode.decode_to_tensor``) over a list of files on a thread pool (Pillow releases
the GIL) and streams the results, chunk by chunk in file order, into ``<key>.npy``: a standard numpy array
``uint8 [N, 3, S, S]``, read back with ``np.load(mmap_mode="r")``. Next to it, ``<key>.json`` holds the count,
the size and the files that failed to decode, with their reasons (callers exclude bad files beforehand with
``honed.data.scan``; this is a safety net, and a bad file's rows are left black).

The key hashes each file's absolute path, byte size and modification time, the resolution, ``max_pixels``
and ``CACHE_FORMAT``: the same files at the same size find the same cache in later runs, and a changed,
added or removed file gives a new key, so a stale cache is never read. Bump ``CACHE_FORMAT`` when decoding
changes its output. Old caches are not deleted: clear the folder to reclaim space.

Concurrent runs are safe. Both files are written under temporary names and renamed into place, the index
last, so a reader sees a complete cache or none. On POSIX a lock file makes a second builder of the same key
(another data-parallel rank, another run) wait and then reuse the first builder's result; where locking is
unavailable, each builder writes its own identical copy and the last rename wins.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
import contextlib
from dataclasses import dataclass
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from honed.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_to_tensor
from honed.data.scan import default_threads, map_files
from honed.errors import HonedError
from honed.tracking.atomic import atomic_path, write_json

try:  # POSIX only: elsewhere concurrent builders each write their own copy
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CACHE_FORMAT = 1  # bump when the bytes a file decodes to change: old caches then get new keys
CHUNK_IMAGES = 256  # images per decoding task: amortises the pool; memory in flight is a few chunks
CACHE_ENV = "HONED_CACHE"  # overrides ~/.cache/honed as the root of honed's caches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadImage:
    """A file that failed to decode while the cache was built; its row holds zeros."""

    path: str
    reason: str  # short and stable, from DecodeError.reason
    detail: str = ""


class DecodedCache:
    """A decoded image set on disk: ``images`` is a read-only memory map ``uint8 [N, 3, S, S]`` in file order."""

    def __init__(self, images: np.memmap, *, key: str, size: int, bad: dict[int, BadImage], location: Path):
        self.images = images
        self.key = key
        self.size = size
        self.bad = bad  # row -> why that file did not decode
        self.location = location  # the .npy file; the index is the same name with .json

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"DecodedCache({len(self)} images at {self.size}px, {len(self.bad)} bad, {self.location})"

    @property
    def ok(self) -> np.ndarray:
        """bool [N]: True where the file decoded."""
        mask = np.ones(len(self), dtype=bool)
        mask[list(self.bad)] = False
        return mask

    @classmethod
    def build(
        cls,
        paths: Sequence[str | os.PathLike],
        size: int,
        *,
        cache_dir: Path | None = None,
        threads: int | None = None,
        progress: Callable[[int], None] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> DecodedCache:
        """The cache of ``paths`` decoded at ``size`` px: reused when it exists, else built (and kept).

        ``threads`` defaults to the CPUs this process may use; ``progress`` gets increments of files done
        (nothing is reported when the cache is reused). ``cache_dir`` defaults to :func:`default_cache_dir`.
        """
        _check_request(paths, size)
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        key = cache_key(paths, size, max_pixels=max_pixels, threads=threads)
        found = _open_if_complete(folder, key)
        if found is not None:
            return found
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _exclusive(folder / f"{key}.lock"):
                found = _open_if_complete(folder, key)  # another builder may have finished while we waited
                if found is not None:
                    return found
                log.info("decoding %d images at %dpx into %s", len(paths), size, folder)
                _write(folder, key, [os.fspath(p) for p in paths], size, max_pixels, threads, progress)
        except OSError as error:
            needed = len(paths) * 3 * size * size / 2**30
            raise HonedError(f"cannot write the decoded cache ({needed:.1f} GiB) in {folder}: {error}; free space "
                             f"there or point ${CACHE_ENV} at a writable folder with room") from None
        return cls.open(folder / f"{key}.json")

    @classmethod
    def find(
        cls,
        paths: Sequence[str | os.PathLike],
        size: int,
        *,
        cache_dir: Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> DecodedCache | None:
        """The existing cache of exactly these files at this size, or None; never builds."""
        _check_request(paths, size)
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return _open_if_complete(folder, cache_key(paths, size, max_pixels=max_pixels))

    @classmethod
    def open(cls, location: str | os.PathLike) -> DecodedCache:
        """Open a built cache by its index (``<key>.json``) or its array (``<key>.npy``)."""
        index_path = Path(location).with_suffix(".json")
        array_path = index_path.with_suffix(".npy")
        try:
            index = json.loads(index_path.read_text())
            images = np.load(array_path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise HonedError(f"cannot open the decoded cache {index_path}: {error}; delete it to rebuild") from None
        expected = (index.get("count"), 3, index.get("size"), index.get("size"))
        if index.get("format") != CACHE_FORMAT or images.shape != expected or images.dtype != np.uint8:
            raise HonedError(f"the decoded cache {array_path} does not match its index; delete both files to rebuild")
        bad = {int(row): BadImage(**entry) for row, entry in index.get("bad", {}).items()}
        return cls(images, key=index["key"], size=int(index["size"]), bad=bad, location=array_path)


def cache_root() -> Path:
    """The root of honed's caches (decoded images, frozen features, converted weights): ``$HONED_CACHE``, else
    ``~/.cache/honed``; read at call time, not import time."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "honed")


def default_cache_dir() -> Path:
    """Where decoded images are cached: ``cache_root()/decoded``."""
    return cache_root() / "decoded"


def cache_key(
    paths: Sequence[str | os.PathLike], size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS, threads: int | None = None
) -> str:
    """Hex digest of (each file's absolute path, byte size, mtime), the size, ``max_pixels`` and the format."""
    return files_digest(f"honed decoded cache {CACHE_FORMAT} {size} {max_pixels}", paths, threads=threads)


def files_digest(header: str, paths: Sequence[str | os.PathLike], *, threads: int | None = None) -> str:
    """Hex digest of ``header`` and each file's absolute path, byte size and mtime, in order: a key that changes
    when any file is changed, added or removed, at the cost of one ``stat`` per file."""
    digest = hashlib.blake2b(f"{header}\n".encode(), digest_size=16)
    for signature in map_files(_signature, list(paths), threads=threads):
        digest.update(signature.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# --- building -------------------------------------------------------------------------------------------


def _write(folder: Path, key: str, paths: list[str], size: int, max_pixels: int, threads: int | None,
           progress: Callable[[int], None] | None) -> None:
    """Decode into ``<key>.npy``, then write ``<key>.json``: each atomically, the index last."""
    bad: dict[int, BadImage] = {}
    with atomic_path(folder / f"{key}.npy") as tmp:
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
        offset = header.offset
        del header  # the map only wrote the header and sized the file; rows are streamed in below
        with open(tmp, "r+b") as out:
            out.seek(offset)
            for start, chunk, errors in _decoded_chunks(paths, size, max_pixels, threads):
                out.write(memoryview(chunk).cast("B"))
                bad.update({start + row: error for row, error in errors.items()})
                if progress is not None:
                    progress(len(chunk))
    index = {"format": CACHE_FORMAT, "key": key, "count": len(paths), "size": size, "max_pixels": max_pixels,
             "bad": {str(row): vars(entry) for row, entry in sorted(bad.items())}}
    write_json(folder / f"{key}.json", index)


def _decoded_chunks(paths: list[str], size: int, max_pixels: int,
                    threads: int | None) -> Iterator[tuple[int, np.ndarray, dict[int, BadImage]]]:
    """``(first row, uint8 [n, 3, S, S], bad rows within the chunk)`` in file order, decoded on a thread pool.

    At most two chunks per thread are in flight, so memory stays flat however many files there are.
    """
    workers = max(1, threads or default_threads())
    starts = iter(range(0, len(paths), CHUNK_IMAGES))
    pending: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="honed-cache") as pool:
        for start in starts:
            pending.append((start, pool.submit(_decode_chunk, paths[start:start + CHUNK_IMAGES], size, max_pixels)))
            if len(pending) >= 2 * workers:
                first, future = pending.popleft()
                yield (first, *future.result())
        while pending:
            first, future = pending.popleft()
            yield (first, *future.result())


def _decode_chunk(paths: list[str], size: int, max_pixels: int) -> tuple[np.ndarray, dict[int, BadImage]]:
    chunk = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    bad: dict[int, BadImage] = {}
    for row, path in enumerate(paths):
        try:
            chunk[row] = decode_to_tensor(path, size, max_pixels=max_pixels).numpy()
        except DecodeError as error:
            bad[row] = BadImage(path=path, reason=error.reason, detail=error.detail)
    return chunk, bad


def _signature(path: str | os.PathLike) -> str:
    """One line naming a file's content cheaply: absolute path, byte size, mtime (ns); -1s if unreadable."""
    absolute = os.path.abspath(os.fspath(path))
    try:
        stat = os.stat(absolute)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, mtime = -1, -1
    return f"{absolute}\0{size}\0{mtime}\n"


# --- opening and locking --------------------------------------------------------------------------------


def _open_if_complete(folder: Path, key: str) -> DecodedCache | None:
    """The cache under ``key`` if both its files are in place and agree, else None (it will be rebuilt)."""
    index_path = folder / f"{key}.json"
    if not index_path.is_file():
        return None
    try:
        return DecodedCache.open(index_path)
    except HonedError as error:
        log.warning("rebuilding an unreadable decoded cache: %s", error)
        return None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; the OS drops it if the process dies)."""
    if fcntl is None:  # pragma: no cover - Windows: no wait, each builder writes its own copy
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_request(paths: Sequence, size: int) -> None:
    if len(paths) == 0:
        raise HonedError("no images to cache: the file list is empty")
    if not isinstance(size, int) or size < 1:
        raise HonedError(f"image size must be a positive number of pixels, got {size!r}")
