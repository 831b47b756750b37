"""The serving snapshot, swapped atomically while queries hold leases on it."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from service.core.errors import Unavailable

logger = logging.getLogger(__name__)


class SnapshotHolder:
    """Holds the serving snapshot and closes a replaced one once no query uses it.

    A query takes a lease for its whole search and metadata lookup, so a swap
    never closes a snapshot under a running query.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = None
        self._leases: dict[int, int] = {}
        self._retired: dict[int, object] = {}

    @property
    def current(self):
        """The serving snapshot, or None before the first one is loaded."""
        return self._current

    @contextmanager
    def lease(self) -> Iterator:
        """Yield the serving snapshot and keep it open until the block exits."""
        with self._lock:
            snapshot = self._current
            if snapshot is None:
                raise Unavailable("no index snapshot is loaded yet; build one with POST /v1/admin/index/rebuild",
                                  code="not_ready", retry_after_s=5)
            key = id(snapshot)
            self._leases[key] = self._leases.get(key, 0) + 1
        try:
            yield snapshot
        finally:
            self._release(snapshot)

    def swap(self, snapshot) -> Optional[object]:
        """Serve ``snapshot`` from now on and return the one it replaced."""
        with self._lock:
            previous = self._current
            self._current = snapshot
            if previous is not None:
                if self._leases.get(id(previous), 0) == 0:
                    self._close(previous)
                else:
                    self._retired[id(previous)] = previous
        logger.info("serving snapshot %s (%d images, %d captions)",
                    snapshot.version, snapshot.image_count, snapshot.caption_count)
        return previous

    def close(self) -> None:
        """Close the serving snapshot; used at shutdown."""
        with self._lock:
            snapshot, self._current = self._current, None
            retired = list(self._retired.values())
            self._retired.clear()
        for item in [snapshot, *retired]:
            if item is not None:
                self._close(item)

    def _release(self, snapshot) -> None:
        key = id(snapshot)
        with self._lock:
            self._leases[key] -= 1
            if self._leases[key] > 0:
                return
            del self._leases[key]
            retired = self._retired.pop(key, None)
        if retired is not None:
            self._close(retired)

    @staticmethod
    def _close(snapshot) -> None:
        try:
            snapshot.close()
        except Exception:  # a failed close must not break serving of the new snapshot
            logger.exception("closing snapshot %s failed", getattr(snapshot, "version", "?"))
        else:
            logger.info("closed snapshot %s", snapshot.version)
