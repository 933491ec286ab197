"""Client rate limiting: at most N queries per second from one address (Unbound's ip-ratelimit).

Rules:
- A token bucket per client address: it refills at `qps` tokens a second and holds at most
  `qps` (one second of burst). A query that finds the bucket empty is dropped, as Unbound
  drops it: a reply, even REFUSED, would still feed a reflection attack.
- The table of buckets is bounded (`max_clients`, least recently seen evicted first) so that
  a flood from spoofed sources costs bounded memory; an evicted client starts afresh.
- Time comes from the injected clock, so tests need not sleep.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class IpRateLimiter:
    """`allow(ip)` says whether a query from `ip` is within its rate."""

    def __init__(
        self,
        qps: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        if qps < 1:
            raise ValueError("ip-ratelimit must be at least 1 query per second")
        self.qps = qps
        self._clock = clock
        self._max_clients = max_clients
        # ip -> (tokens left, time of the last refill)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.dropped = 0

    def allow(self, ip: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.pop(ip, (float(self.qps), now))
        tokens = min(float(self.qps), tokens + (now - last) * self.qps)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.dropped += 1
        self._buckets[ip] = (tokens, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return allowed

    @property
    def tracked_clients(self) -> int:
        return len(self._buckets)
