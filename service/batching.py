"""Micro-batching of concurrent queries into one encoder call.

Request threads call ``MicroBatcher.submit`` and wait on the returned future.
One worker thread takes the first waiting item, collects more until the batch
contains ``max_batch_size`` items or ``max_wait_s`` has passed since it took the
first, and runs the encode function once for the whole batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[Any]], np.ndarray]


class QueueFull(Exception):
    """More queries are waiting than the batcher accepts."""


@dataclass
class BatcherConfig:
    max_batch_size: int = 16
    max_wait_s: float = 0.005
    max_pending: int = 256


class MicroBatcher:
    """Runs ``encode`` on batches of submitted items in one worker thread.

    ``encode`` maps a sequence of n items to an ``[n, dim]`` array; row i of the
    result resolves the future of item i. When ``encode`` raises, every future
    of that batch gets the exception.
    """

    def __init__(self, encode: EncodeFn, config: BatcherConfig, *, name: str,
                 on_batch: Optional[Callable[[int, float], None]] = None):
        self._encode = encode
        self._config = config
        self._name = name
        self._on_batch = on_batch
        self._queue: queue.Queue = queue.Queue(maxsize=config.max_pending)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        """Queue one item and return the future of its ``[dim]`` vector."""
        if self._stopped.is_set():
            raise RuntimeError(f"batcher {self._name} is stopped")
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFull(f"{self._config.max_pending} {self._name} queries are already waiting") from None
        return future

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker after the batch in progress; waiting futures get an error."""
        self._stopped.set()
        self._thread.join(timeout_s)
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                break
            future.set_exception(RuntimeError(f"batcher {self._name} stopped"))

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._run_batch(self._collect(first))

    def _collect(self, first: tuple) -> list[tuple]:
        batch = [first]
        deadline = time.monotonic() + self._config.max_wait_s
        while len(batch) < self._config.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run_batch(self, batch: list[tuple]) -> None:
        items = [item for item, _ in batch]
        started = time.perf_counter()
        try:
            vectors = self._encode(items)  # [batch, dim]
        except Exception as error:  # the error belongs to the callers, who re-raise it
            logger.exception("%s batch of %d failed", self._name, len(items))
            for _, future in batch:
                future.set_exception(error)
            return
        if self._on_batch is not None:
            self._on_batch(len(items), time.perf_counter() - started)
        for row, (_, future) in enumerate(batch):
            future.set_result(vectors[row])
