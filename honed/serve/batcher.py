"""Dynamic batching: images from requests that arrive together go through the model as one batch.

One model thread owns the model (no locks around it, one CUDA stream, no thread oversubscription). It takes
the first waiting image, waits up to ``max_wait_s`` for more (stopping early at ``max_batch``), stacks them
and predicts once. Requests wait on a future per image; one that gave up (timeout) is cancelled and skipped.
The queue is bounded: a request whose images do not all fit is refused at once (429), never half-queued.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
import logging
import threading
import time
from typing import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue cannot take these images now; the client should retry later."""


class BatcherStopped(Exception):
    """The server is shutting down."""


@dataclass
class _Item:
    image: torch.Tensor  # uint8 [3, S, S]
    future: Future  # numpy row of outputs


class Batcher:
    """Collects single images into batches for ``predict`` (uint8 [B,3,S,S] -> array [B,K]) in one thread."""

    def __init__(self, predict: Callable[[torch.Tensor], np.ndarray], *, max_batch: int, max_wait_s: float,
                 max_queue: int, on_batch: Callable[[int, float], None] | None = None):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with (batch size, seconds) after each model call
        self._queue: deque[_Item] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="honed-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        for item in self._drain():
            item.future.cancel()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, images: list[torch.Tensor]) -> list[Future]:
        """Queue every image or none: QueueFull when they do not all fit."""
        futures = [Future() for _ in images]
        with self._ready:
            if self._stopping:
                raise BatcherStopped
            if len(self._queue) + len(images) > self.max_queue:
                raise QueueFull
            self._queue.extend(_Item(image, future) for image, future in zip(images, futures))
            self._ready.notify()
        return futures

    def _drain(self) -> list[_Item]:
        with self._ready:
            items = list(self._queue)
            self._queue.clear()
        return items

    def _next_batch(self) -> list[_Item]:
        """Block for the first item, then gather more until the batch is full or the wait is over."""
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            if self._stopping:
                return []
            deadline = time.monotonic() + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            count = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if live:
                self._predict(live)

    def _predict(self, items: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            outputs = self.predict(torch.stack([item.image for item in items]))
        except Exception as error:  # a model failure fails these requests, never the model thread
            log.exception("prediction failed for a batch of %d", len(items))
            for item in items:
                item.future.set_exception(error)
            return
        if self.on_batch is not None:
            self.on_batch(len(items), time.perf_counter() - start)
        for item, row in zip(items, outputs):
            item.future.set_result(row)
