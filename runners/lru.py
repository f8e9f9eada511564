"""A small per-process least-recently-used cache for the few large objects a worker reuses between trials.

Hand-written rather than ``functools.lru_cache`` because the cache key is not the arguments of the
function that builds the value: the feature cache is keyed by a content digest, a device and a folder,
while its builder also needs the data set object itself (unhashable, and not what identifies the result).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """At most ``size`` values, the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU cache holds at least 1 value, got size {size}")
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value cached under ``key``, else ``make()`` stored under it."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
