"""One inference thread that micro-batches concurrent queries into encoder calls.

Request handlers call ``MicroBatcher.submit`` (an item to encode) or
``MicroBatcher.call`` (a function, such as a search by a stored vector) and
wait on the returned future. One worker thread takes the first waiting task
and collects more until the batch contains ``max_batch_size`` tasks or
``max_wait_s`` has passed since it took the first. It then runs each encode
function once for the items of its kind, and each task's continuation.

All torch and FAISS work of the queries runs on this one thread. On the CPU
each thread that calls into torch starts its own OpenMP team, and teams that
spin on the same cores slow each other down. On 2 cores (torch 2.14), one
text query took 11 ms from a single thread and 20 ms once a second thread
had also encoded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

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


@dataclass
class _Task:
    kind: Optional[str]  # an encoder name, or None for a plain call
    item: Any  # the item to encode, or the function to call
    then: Optional[Callable[[np.ndarray], Any]]
    future: Future


class MicroBatcher:
    """Micro-batcher that runs ``encoders[kind]`` on batches of submitted items in one worker thread.

    An encode function maps a sequence of n items to an ``[n, dim]`` array, and
    row i resolves task i. When it raises, every task of that kind in the batch
    gets the exception. A continuation's exception goes to its own task only.
    """

    def __init__(self, encoders: Mapping[str, EncodeFn], config: BatcherConfig, *, name: str = "inference",
                 on_batch: Optional[Callable[[str, int, float], None]] = None):
        self._encoders = dict(encoders)
        self._config = config
        self._name = name
        self._on_batch = on_batch
        self._queue: queue.Queue = queue.Queue(maxsize=config.max_pending)
        self._last_batch_size = 1
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, kind: str, item: Any, then: Optional[Callable[[np.ndarray], Any]] = None) -> Future:
        """Queue one item to encode and return the future of ``then(vector)``, or of the ``[dim]`` vector."""
        if kind not in self._encoders:
            raise KeyError(f"no encoder named {kind!r}; known: {sorted(self._encoders)}")
        return self._put(_Task(kind, item, then, Future()))

    def call(self, function: Callable[[], Any]) -> Future:
        """Queue a call to run on the worker thread, unbatched, and return the future of its result."""
        return self._put(_Task(None, function, None, Future()))

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker after the batch in progress; waiting futures get an error."""
        self._stopped.set()
        self._thread.join(timeout_s)
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            task.future.set_exception(RuntimeError(f"batcher {self._name} stopped"))

    def _put(self, task: _Task) -> Future:
        if self._stopped.is_set():
            raise RuntimeError(f"batcher {self._name} is stopped")
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            raise QueueFull(f"{self._config.max_pending} queries are already waiting") from None
        return task.future

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._run_batch(self._collect(first))

    def _collect(self, first: _Task) -> list[_Task]:
        """Take the waiting tasks, and wait up to ``max_wait_s`` while fewer arrived than last time.

        The previous batch's size estimates how many clients are waiting, so a
        lone client (previous batch of 1) does not wait, except once right after
        a larger batch. Under concurrent load
        the wait gives the clients whose responses just went out time to send
        their next queries. Batches then stay full instead of alternating
        between small and large.
        """
        batch = [first]
        expected = min(self._last_batch_size, self._config.max_batch_size)
        deadline = time.monotonic() + self._config.max_wait_s
        while len(batch) < self._config.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                if len(batch) < expected and remaining > 0:
                    batch.append(self._queue.get(timeout=remaining))
                else:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._last_batch_size = len(batch)
        return batch

    def _run_batch(self, batch: list[_Task]) -> None:
        for kind in self._encoders:
            tasks = [task for task in batch if task.kind == kind]
            if tasks:
                self._encode(kind, tasks)
        for task in batch:
            if task.kind is None:
                self._resolve(task, task.item)

    def _encode(self, kind: str, tasks: list[_Task]) -> None:
        started = time.perf_counter()
        try:
            vectors = self._encoders[kind]([task.item for task in tasks])  # [batch, dim]
        except Exception as error:  # the error belongs to the callers, who re-raise it
            logger.exception("%s batch of %d failed", kind, len(tasks))
            for task in tasks:
                task.future.set_exception(error)
            return
        if self._on_batch is not None:
            self._on_batch(kind, len(tasks), time.perf_counter() - started)
        for row, task in enumerate(tasks):
            vector = vectors[row]
            if task.then is None:
                task.future.set_result(vector)
            else:
                self._resolve(task, lambda: task.then(vector))

    @staticmethod
    def _resolve(task: _Task, function: Callable[[], Any]) -> None:
        try:
            result = function()
        except Exception as error:  # a request's own error, such as NotFound, goes back to that request
            task.future.set_exception(error)
            return
        task.future.set_result(result)
