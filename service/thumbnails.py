"""In-memory LRU cache of rendered thumbnails."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable


class ThumbnailCache:
    """Keeps up to ``max_items`` JPEG thumbnails, evicting the least recently used."""

    def __init__(self, max_items: int):
        self._max_items = max_items
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_render(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render()
        if self._max_items > 0:
            with self._lock:
                self._items[key] = data
                while len(self._items) > self._max_items:
                    self._items.popitem(last=False)
        return data
