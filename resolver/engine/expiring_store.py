"""The record cache's store: entries that expire at their own time, evicted least recently
used first, bounded in entries or in bytes.

Rules:
- An entry is live while `timer() < ttu(key, value, now)` (the time-to-use computed when it
  is stored); reads return live entries only and mark them recently used.
- A store first sweeps out what has expired (the expiry heap), then evicts the least
  recently used entries until the new one fits. With a `sizer`, `maxsize` is bytes as
  `sizer(key, value)` counts them (resolver.engine.entry_size), computed once per store;
  without one, it counts entries.
- An entry that is already expired, or larger than the whole budget, is not stored, and
  whatever its key held before goes: the store never keeps an older value in its place
  (Unbound does not cache what does not fit either).

cachetools' TLRUCache had these semantics; this store keeps one ordered map and one heap
instead of its four containers and a timer wrapper: a read is one lookup, one clock call
and one move, which mattered because a cold resolution reads the cache dozens of times.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Hashable
from itertools import count
from typing import Any, Generic, TypeVar

__all__ = ["ExpiringStore"]

K = TypeVar("K", bound=Hashable)
Sizer = Callable[[Any, Any], int]
TimeToUse = Callable[[Any, Any, float], float]

#: The expiry heap is rebuilt from the live entries once replaced and removed entries
#: have left it this many times longer than the store.
_HEAP_SLACK = 2

#: What the ordered map and the expiry heap both hold per entry, one list shared by the two
#: (one object an entry, not a tuple in each): [expires, sequence, key, value, size]. The
#: sequence orders equal expiries, so keys are never compared.
_Slot = list[Any]


class ExpiringStore(Generic[K]):
    """An LRU map whose entries expire; see the module docstring for the rules."""

    __slots__ = ("_data", "_heap", "_seq", "_sizer", "_timer", "_ttu", "currsize", "maxsize")

    def __init__(self, maxsize: float, ttu: TimeToUse, *, timer: Callable[[], float],
                 sizer: Sizer | None = None) -> None:
        self.maxsize = maxsize
        #: Bytes (with a sizer) or entries stored, expired ones not yet swept included.
        self.currsize = 0
        self._data: OrderedDict[K, _Slot] = OrderedDict()
        #: The same slots by expiry; a slot its key no longer maps to is stale and skipped.
        self._heap: list[_Slot] = []
        self._ttu = ttu
        self._timer = timer
        self._sizer = sizer
        self._seq = count()

    def __len__(self) -> int:
        """How many entries are live (the expired ones are swept out first)."""
        self._sweep(self._timer())
        return len(self._data)

    def get(self, key: K, default: Any = None) -> Any:
        """The live value under `key`, now the most recently used; else `default`."""
        slot = self._data.get(key)
        if slot is None or not self._timer() < slot[0]:
            return default
        self._data.move_to_end(key)
        return slot[3]

    def __setitem__(self, key: K, value: Any) -> None:
        now = self._timer()
        self._sweep(now)
        expires = self._ttu(key, value, now)
        size = self._sizer(key, value) if self._sizer is not None else 1
        if not now < expires or size > self.maxsize:
            self.pop(key)
            return
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self.currsize -= old[4]
            old[3] = None  # the heap still holds the slot until it is swept: not the value
        while data and self.currsize + size > self.maxsize:
            evicted = data.popitem(last=False)[1]
            self.currsize -= evicted[4]
            evicted[3] = None
        slot = [expires, next(self._seq), key, value, size]
        data[key] = slot
        self.currsize += size
        heapq.heappush(self._heap, slot)

    def pop(self, key: K, default: Any = None) -> Any:
        """Remove `key`; its value if it was live, else `default`."""
        slot = self._data.pop(key, None)
        if slot is None:
            return default
        self.currsize -= slot[4]
        value, slot[3] = slot[3], None
        return value if self._timer() < slot[0] else default

    def keys(self) -> list[K]:
        """The keys of the live entries, oldest use first, as a list taken now."""
        now = self._timer()
        return [key for key, slot in self._data.items() if now < slot[0]]

    def stored_items(self) -> dict[K, Any]:
        """Every stored value by key, expired or not, without touching the LRU order."""
        return {key: slot[3] for key, slot in self._data.items()}

    @property
    def heap_length(self) -> int:
        """Items in the expiry heap, stale ones included (what a store leaves behind)."""
        return len(self._heap)

    def _sweep(self, now: float) -> None:
        """Drop the entries expired by `now`, and the heap's stale items on the way."""
        heap, data = self._heap, self._data
        if len(heap) > _HEAP_SLACK * len(data) + 16:
            heap[:] = data.values()
            heapq.heapify(heap)
        while heap and not now < heap[0][0]:
            slot = heapq.heappop(heap)
            key = slot[2]
            if data.get(key) is slot:
                del data[key]
                self.currsize -= slot[4]
