"""A TTL-aware LRU cache bounded in bytes rather than in entries.

cachetools' caches take a `getsizeof(value)`; an entry's cost also depends on its key (a
name the key shares with the value counts once) and on whether its value is already held
under another key, so the size here is a function of both, computed once when the entry is
stored (resolver.engine.entry_size). An entry larger than the whole budget is not stored,
and whatever the key held before goes: the cache never keeps an older value in its place
(Unbound does not cache what does not fit either).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachetools import TLRUCache

__all__ = ["SizedTLRUCache"]

Sizer = Callable[[Any, Any], int]


class SizedTLRUCache(TLRUCache[Any, Any]):
    """TLRUCache whose bound is `maxsize` bytes as `sizer(key, value)` counts them; with no
    sizer it is a plain TLRUCache bounded in entries."""

    def __init__(self, maxsize: float, ttu: Callable[[Any, Any, float], float], *,
                 timer: Callable[[], float], sizer: Sizer | None = None) -> None:
        if sizer is None:
            super().__init__(maxsize=maxsize, ttu=ttu, timer=timer)
        else:
            super().__init__(maxsize=maxsize, ttu=ttu, timer=timer,
                             getsizeof=self._size_of_pending)
        self._sizer = sizer
        self._pending = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        if self._sizer is not None:
            size = self._sizer(key, value)
            if size > self.maxsize:
                self.pop(key, None)
                return
            self._pending = size  # read back by cachetools through getsizeof, just below
        super().__setitem__(key, value)

    def _size_of_pending(self, _value: Any) -> int:
        return self._pending
