"""Unpredictable numbers for query ids, server choice and 0x20 letter case (RFC 5452 §9.2).

`PooledSystemRandom` draws from the kernel's CSPRNG like `random.SystemRandom`, but reads it
4 KiB at a time instead of one system call per number: a cold resolution asks for several
numbers per upstream query, and a getrandom(2) call each was a measurable share of its time.
The numbers are as unpredictable as the kernel's; only the number of calls changes. A forked
child (a worker) never reuses its parent's pool: the pool is dropped in the child at fork.
"""

from __future__ import annotations

import os
import random
import weakref
from typing import Any, NoReturn

__all__ = ["PooledSystemRandom"]

_POOL_OCTETS = 4096
#: 2**-53: turns 53 random bits into a float in [0, 1), as random.SystemRandom does.
_FLOAT_SCALE = 1.0 / (1 << 53)

_live: weakref.WeakSet[PooledSystemRandom] = weakref.WeakSet()


def _drop_pools_after_fork() -> None:
    for generator in list(_live):
        generator._drop_pool()


os.register_at_fork(after_in_child=_drop_pools_after_fork)


class PooledSystemRandom(random.Random):
    """random.Random's methods on octets from os.urandom, fetched in pools."""

    def __init__(self) -> None:
        self._pool = b""
        self._used = 0
        super().__init__()
        _live.add(self)

    def _drop_pool(self) -> None:
        self._pool, self._used = b"", 0

    def _octets(self, count: int) -> bytes:
        start = self._used
        if start + count > len(self._pool):
            self._pool = os.urandom(max(_POOL_OCTETS, count))
            start = 0
        self._used = start + count
        return self._pool[start : start + count]

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        if k == 0:
            return 0
        octets = (k + 7) // 8
        return int.from_bytes(self._octets(octets), "big") >> (octets * 8 - k)

    def random(self) -> float:
        return (int.from_bytes(self._octets(7), "big") >> 3) * _FLOAT_SCALE

    def randbytes(self, n: int) -> bytes:
        return self._octets(n)

    def seed(self, *args: Any, **kwargs: Any) -> None:
        """Ignored, as by random.SystemRandom: the kernel is the only seed."""
        return None

    def getstate(self) -> NoReturn:
        raise NotImplementedError("the kernel's random state cannot be saved")

    def setstate(self, state: Any) -> NoReturn:
        raise NotImplementedError("the kernel's random state cannot be restored")
