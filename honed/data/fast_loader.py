"""Batches straight from a decoded cache: no per-image Python work, no worker processes.

``CachedBatchLoader`` keeps the contract of the DataLoader that ``honed.data.loader.make_loader`` builds, so the
training loop cannot tell them apart: ``len(loader)`` batches of ``(uint8 [B, 3, S, S], targets [B])``, a
``loader.sampler`` that is the same ``ResumableSampler`` (torch's ``DistributedSampler``) when training (order
fixed by (seed, epoch) via ``start_epoch``, sharded by rank, the same ``drop_last`` rules, and a mid-epoch
start that skips the batches already trained on), and the dataset's order with a final partial
batch when evaluating. Batch ``i`` holds the same samples, in the same order, as batch ``i`` of ``make_loader``.

Each batch is one fancy-indexed read of the memory map (rows read in sorted order, then put in sampler order).
Three placements:

- default: read from the map as batches are asked for; with ``pin_memory`` (CUDA) into pinned memory, one batch
  ahead on a background thread, so reading and the training loop's ``.to(device, non_blocking=True)`` overlap
  the GPU's work;
- ``device="cuda"``: the whole uint8 array is copied to GPU memory once and every batch is an ``index_select``
  there, so loading costs almost nothing (CIFAR-10 at 32 px is 150 MB; ImageNet at 128 px is 63 GB);
- ``device="cpu"``: the array is read into RAM once and batches are taken from it (numpy, not torch's
  ``index_select``, which on CPU is many times slower for 4-D uint8 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import math
from pathlib import Path
import queue
import threading

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from honed.data.cache import DecodedCache
from honed.data.dataset import ImageDataset
from honed.data.loader import ResumableSampler, make_loader
from honed.errors import HonedError

RESIDENT_FRACTION = 0.5  # at most this share of the GPU's free memory may hold a resident image array
COPY_ROWS = 4096  # rows per host-to-device copy when filling a resident array: bounds the staging buffer

Batch = tuple[torch.Tensor, torch.Tensor]


class CachedBatchLoader:
    """Batches ``(uint8 [B, 3, S, S], targets [B])`` from a ``[N, 3, S, S]`` uint8 array (a cache's memory map).

    ``targets`` has one row per image, as the dataset's targets. ``train`` shuffles (``ResumableSampler``,
    seed, rank, world size) and drops the last partial batch as ``make_loader`` does; evaluation keeps order.
    ``prefetch`` reads the next batch on a background thread; by default only with ``pin_memory`` (CUDA), where
    reading overlaps the GPU's work. On a CPU run the thread would compete with torch's own threads for the
    cores, and a read from a warm map is cheap next to the step.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, *, batch_size: int, train: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: str | torch.device | None = None,
                 pin_memory: bool = False, prefetch: bool | None = None):
        _check_arrays(images, targets, batch_size)
        self.images = images
        self.targets = np.asarray(targets)
        self.batch_size = batch_size
        self.train = train
        self.pin_memory = pin_memory and torch.cuda.is_available()  # as DataLoader: no pinning without CUDA
        self.prefetch = self.pin_memory if prefetch is None else prefetch
        self.device = torch.device(device) if device is not None else None
        positions = range(len(images))  # the samplers only need a length
        self.sampler = (ResumableSampler(positions, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                         drop_last=world_size > 1)
                        if train else SequentialSampler(positions))
        self.drop_last = train and len(images) > batch_size
        self._resident = None  # (images, targets) on an accelerator
        if self.device is not None and self.device.type == "cpu":
            self.images = np.array(images)  # read into RAM once; batches are numpy takes, as from the map
        elif self.device is not None:
            self._resident = _resident_arrays(images, self.targets, self.device)

    def __len__(self) -> int:
        samples = len(self.sampler)
        return samples // self.batch_size if self.drop_last else math.ceil(samples / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        if self._resident is not None:
            return self._resident_batches(order)
        batches = (self._read(order[i * self.batch_size:(i + 1) * self.batch_size]) for i in range(len(self)))
        return _ahead(batches) if self.prefetch else batches

    def _resident_batches(self, order: np.ndarray) -> Iterator[Batch]:
        images, targets = self._resident
        order_on_device = torch.from_numpy(order).to(images.device)
        flat = images.view(len(images), -1)  # index_select on 2-D rows is a plain row copy
        for i in range(len(self)):
            rows = order_on_device[i * self.batch_size:(i + 1) * self.batch_size]
            yield flat.index_select(0, rows).view(len(rows), *images.shape[1:]), targets.index_select(0, rows)

    def _read(self, rows: np.ndarray) -> Batch:
        """One batch from the memory map: rows read in sorted order (disk-friendly), returned in sampler order."""
        out = torch.empty((len(rows), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=self.pin_memory)
        read_rows(self.images, rows, out.numpy())
        return out, torch.from_numpy(np.ascontiguousarray(self.targets[rows]))


def read_rows(images: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:] = images[rows]``, touching ``images`` in ascending row order."""
    order = np.argsort(rows, kind="stable")
    if np.array_equal(order, np.arange(len(rows))):  # already sorted: evaluation, or a lucky batch
        np.take(images, rows, axis=0, out=out)
    else:
        out[order] = np.take(images, rows[order], axis=0)
    return out


def make_fast_loader(dataset: Dataset, *, batch_size: int, train: bool, workers: int = -1, seed: int = 0,
                     pin_memory: bool = False, rank: int = 0, world_size: int = 1,
                     device: str | torch.device | None = None, cache: DecodedCache | None = None,
                     cache_dir: Path | None = None, progress: Callable[[int], None] | None = None,
                     ) -> CachedBatchLoader | DataLoader:
    """``make_loader``'s drop-in replacement: decodes the dataset's files once into a :class:`DecodedCache`
    (reused by later runs), then serves batches from it.

    ``workers`` becomes the number of decoding threads for the first build (-1: one per CPU). ``device`` keeps
    the whole image array on that device (see the module notes). Datasets read from in-memory sources have no
    files to cache and get ``make_loader``'s DataLoader, so switching costs nothing there.
    """
    if not isinstance(dataset, ImageDataset) or dataset.datasets:
        return make_loader(dataset, batch_size=batch_size, train=train, workers=workers, seed=seed,
                           pin_memory=pin_memory, rank=rank, world_size=world_size)
    if cache is None:
        extra = {"max_pixels": dataset.max_pixels} if dataset.max_pixels else {}
        cache = DecodedCache.build(dataset.paths, dataset.image_size, cache_dir=cache_dir,
                                   threads=workers if workers > 0 else None, progress=progress, **extra)
    _check_cache(cache, dataset)
    return CachedBatchLoader(cache.images, np.asarray(dataset.targets), batch_size=batch_size, train=train,
                             seed=seed, rank=rank, world_size=world_size, device=device, pin_memory=pin_memory)


# --- helpers --------------------------------------------------------------------------------------------


def _ahead(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Produce ``batches`` on a background thread, one batch ahead of the consumer.

    The thread stops when the consumer finishes, breaks out early or is garbage collected; an error raised
    while reading is raised again in the consumer.
    """
    slots: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for batch in batches:
                if not _offer(slots, batch, stop):
                    return
            _offer(slots, done, stop)
        except BaseException as error:  # handed to the consumer, which raises it
            _offer(slots, error, stop)

    worker = threading.Thread(target=produce, name="honed-batches", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _offer(slots: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless the consumer has gone; False when it has."""
    while not stop.is_set():
        try:
            slots.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _resident_arrays(images: np.ndarray, targets: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The image array and targets as tensors on ``device``, copied once in slices of ``COPY_ROWS``."""
    if device.type == "cuda":
        _check_fits_on_gpu(images.nbytes, device)
    resident = torch.empty(images.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(images), COPY_ROWS):
        part = torch.from_numpy(np.array(images[start:start + COPY_ROWS]))  # a writable copy of the rows
        resident[start:start + len(part)].copy_(part.pin_memory() if device.type == "cuda" else part)
    return resident, torch.tensor(np.asarray(targets), device=device)  # a copy: the targets may be read-only


def _check_fits_on_gpu(nbytes: int, device: torch.device) -> None:
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes > RESIDENT_FRACTION * free:
        raise HonedError(
            f"the decoded images take {nbytes / 2**30:.1f} GiB, more than {RESIDENT_FRACTION:.0%} of the "
            f"{free / 2**30:.1f} GiB free on {device}: stream them instead (leave device unset) or lower the image size")


def _check_arrays(images: np.ndarray, targets: np.ndarray, batch_size: int) -> None:
    if images.ndim != 4 or images.dtype != np.uint8:
        raise HonedError(f"images must be a uint8 array [N, C, S, S], got {images.dtype} {images.shape}")
    if len(targets) != len(images):
        raise HonedError(f"{len(targets)} targets for {len(images)} images: give one target per image")
    if len(images) == 0:
        raise HonedError("no images to load")
    if batch_size < 1:
        raise HonedError(f"batch size must be at least 1, got {batch_size}")


def _check_cache(cache: DecodedCache, dataset: ImageDataset) -> None:
    if len(cache) != len(dataset) or cache.size != dataset.image_size:
        raise HonedError(f"{cache!r} does not hold this dataset ({len(dataset)} images at {dataset.image_size}px)")
    if cache.bad:
        shown = "; ".join(f"{b.path}: {b.reason}" for b in list(cache.bad.values())[:3])
        raise HonedError(f"{len(cache.bad)} file(s) failed to decode while caching ({shown}): they changed after "
                         "the scan or cannot be read; fix or remove them and run again")
