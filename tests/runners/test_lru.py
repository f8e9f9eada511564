"""The per-process LRU cache the feature sets and data sets share."""

from __future__ import annotations

import pytest

from runners.lru import LRUCache


def test_keeps_the_most_recently_used_values():
    cache: LRUCache[str] = LRUCache(2)
    made: list[str] = []

    def make(key: str):
        return lambda: made.append(key) or key.upper()

    assert cache.get_or_make("a", make("a")) == "A"
    assert cache.get_or_make("b", make("b")) == "B"
    assert cache.get_or_make("a", make("a")) == "A"  # a hit, and now the most recent
    cache.get_or_make("c", make("c"))  # evicts b, the least recently used
    assert len(cache) == 2
    cache.get_or_make("a", make("a"))
    cache.get_or_make("b", make("b"))
    assert made == ["a", "b", "c", "b"]
    cache.clear()
    assert len(cache) == 0


def test_refuses_an_empty_cache():
    with pytest.raises(ValueError, match="at least 1"):
        LRUCache(0)
