"""The batcher on its own: batches up to max_batch within max_wait, all-or-nothing queueing, cancelled
images skipped, a failing model fails only its batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from honed.serve.batcher import Batcher, BatcherStopped, QueueFull


def _images(n: int) -> list[torch.Tensor]:
    return [torch.full((3, 2, 2), i, dtype=torch.uint8) for i in range(n)]


def _sum_model(calls: list[int], gate: threading.Event | None = None):
    def predict(batch: torch.Tensor) -> np.ndarray:
        if gate is not None:
            gate.wait(10)
        calls.append(len(batch))
        return batch.float().sum(dim=(1, 2, 3), keepdim=False).numpy()[:, None]

    return predict


def test_waiting_images_form_batches_of_at_most_max_batch():
    calls: list[int] = []
    gate = threading.Event()
    batcher = Batcher(_sum_model(calls, gate), max_batch=4, max_wait_s=0.05, max_queue=100)
    batcher.start()
    try:
        first = batcher.submit(_images(1))  # taken alone, then held at the gate
        time.sleep(0.2)
        rest = batcher.submit(_images(10))  # wait behind it
        gate.set()
        results = [f.result(10)[0] for f in first + rest]
    finally:
        batcher.stop()
    assert calls == [1, 4, 4, 2]
    assert results == [0.0] + [12.0 * i for i in range(10)]  # each image gets its own row back


def test_queue_is_all_or_nothing_and_cancelled_images_are_skipped():
    calls: list[int] = []
    gate = threading.Event()
    batcher = Batcher(_sum_model(calls, gate), max_batch=8, max_wait_s=0.0, max_queue=3)
    batcher.start()
    try:
        held = batcher.submit(_images(1))
        time.sleep(0.2)  # the model thread holds it at the gate; the queue is empty again
        queued = batcher.submit(_images(2))
        with pytest.raises(QueueFull):
            batcher.submit(_images(2))  # 2 + 2 > 3: nothing of it is queued
        assert batcher.depth == 2
        queued[0].cancel()
        gate.set()
        assert queued[1].result(10)[0] == 12.0 and held[0].result(10)[0] == 0.0
    finally:
        batcher.stop()
    assert calls == [1, 1]  # the cancelled image never reached the model
    with pytest.raises(BatcherStopped):
        batcher.submit(_images(1))


def test_a_failing_batch_fails_its_futures_and_the_thread_goes_on():
    outcomes = iter([RuntimeError("boom"), None])

    def flaky(batch):
        error = next(outcomes)
        if error:
            raise error
        return np.zeros((len(batch), 1))

    batcher = Batcher(flaky, max_batch=2, max_wait_s=0.0, max_queue=10)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.submit(_images(1))[0].result(10)
        assert batcher.submit(_images(1))[0].result(10)[0] == 0.0 and batcher.alive
    finally:
        batcher.stop()
    assert not batcher.alive
