"""Atomic file writes: a crash, a kill or Ctrl-C leaves the old file or the new one, never half of one.

Each writer fills a temporary file next to the target, fsyncs it, renames it over the target with
``os.replace`` (atomic on POSIX and Windows within one filesystem) and fsyncs the folder so the rename
itself survives a power cut. Temporary names start with ``.`` and end with ``.tmp`` and carry the pid and
a random suffix, so concurrent writers never collide and readers can skip them with ``is_temp_name``.

Fault injection (tests only): ``HONED_FAULT="atomic-rename:3"`` makes the 3rd atomic write of the process
SIGKILL its own process after the temporary file is written and fsynced, just before the rename: the most
dangerous moment a real kill can hit. ``fault_point(name)`` is the hook; other writers call it at their own
dangerous moment (the ledger, ``"ledger-commit"``, just before its COMMIT). Several faults: comma-separated.
Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import contextlib
import json
import os
from pathlib import Path
import secrets
import signal
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported only when tensors are saved: writing JSON should stay cheap
    import torch

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
FAULT_ENV = "HONED_FAULT"

# Fault injection's per-process hit counts: the one piece of module state, used only when HONED_FAULT is set.
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILL this process on the N-th time it reaches the point ``name`` when ``HONED_FAULT`` says
    ``name:N`` (tests only: the reliability suite kills runs at exact dangerous moments this way)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    wanted = dict(_parse_fault(part) for part in spec.split(",") if part.strip())
    if name not in wanted:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] == wanted[name]:
        os.kill(os.getpid(), signal.SIGKILL)


def _parse_fault(part: str) -> tuple[str, int]:
    name, _, count = part.strip().rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{FAULT_ENV}={part!r}: write point:N, e.g. atomic-rename:3")
    return name, int(count)


def is_temp_name(name: str) -> bool:
    """True for names of in-progress (or abandoned) atomic writes, which readers must ignore."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def temp_path_for(path: Path) -> Path:
    """A fresh temporary path in the target's folder, unique across processes (pid) and threads (random)."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk, so the rename never exposes a file whose bytes are still in cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries, so a completed rename survives a power cut (a no-op where unsupported)."""
    if os.name == "nt":  # Windows cannot open folders; NTFS journals the rename itself
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (network, FUSE) refuse fsync on folders; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _make_folders(folder: Path) -> None:
    """Create missing folders, fsyncing each new one's parent so the new entries survive a power cut too."""
    if folder.is_dir():
        return
    _make_folders(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:  # made meanwhile by a concurrent writer
        return
    _fsync_dir(folder.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is removed.

    The caller must create the file at the yielded path and close it inside the ``with`` block. Missing
    parent folders are created.
    """
    target = Path(path)
    _make_folders(target.parent)
    tmp = temp_path_for(target)
    try:
        yield tmp
        _fsync_file(tmp)
        fault_point("atomic-rename")
        os.replace(tmp, target)
    except BaseException:  # KeyboardInterrupt included: Ctrl-C must not leave a temp file either
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (UTF-8 by default, newlines unchanged)."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = False) -> None:
    """Write ``obj`` as indented JSON (with a final newline) to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous tensors with no two sharing memory: the form safetensors accepts."""
    seen: set[int] = set()
    prepared: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and ptr != 0:  # tied weights or views of one buffer: save a copy
            tensor = tensor.clone()
        seen.add(ptr)
        prepared[name] = tensor.contiguous()
    return prepared


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save named tensors to a safetensors file atomically; ``metadata`` values must be strings.

    Tensors that share memory (tied weights, views) are cloned, so any state dict can be saved as is.
    """
    from safetensors.torch import save_file

    bad = [key for key, value in (metadata or {}).items() if not isinstance(value, str)]
    if bad:
        raise TypeError(f"safetensors metadata values must be str; convert {bad} with str() or json.dumps()")
    prepared = _prepare_tensors(tensors)
    with atomic_path(path) as tmp:
        save_file(prepared, str(tmp), metadata=dict(metadata) if metadata else None)


def link_or_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Make ``path`` an atomic replica of the complete file ``source``: a hard link where the filesystem
    allows (no bytes copied; safe because atomic writers never modify a file in place), else a copy."""
    import shutil

    with atomic_path(path) as tmp:
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (FAT, some network filesystems)
            shutil.copyfile(source, tmp)


def remove_stale_temps(folder: str | os.PathLike[str], *, min_age_s: float = 3600.0) -> list[Path]:
    """Delete temp files left in ``folder`` by killed writers, if older than ``min_age_s``; return them.

    A writer killed with SIGKILL cannot clean up; the age limit keeps writes still in progress safe.
    """
    cutoff = time.time() - min_age_s
    removed = []
    for entry in Path(folder).iterdir():
        if is_temp_name(entry.name) and entry.is_file() and entry.stat().st_mtime < cutoff:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed
