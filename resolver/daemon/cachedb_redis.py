"""`--cachedb`: the shared cache on a Redis or Valkey server, through redis-py's asyncio client.

- The URL is read here, so a bad one stops `resolver serve` with one line before anything is
  bound: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS (verified against the
  system's CAs or --cachedb-tls-ca-file). The password never appears in a log line.
- The client gives up fast and never retries by itself: a query waits only its read budget,
  and the circuit breaker of resolver.service.cachedb_tier decides when to try again.
- Values are written with SET ... EX (the store forgets them when their TTL and the stale
  window have passed), several in one pipelined round trip, without a transaction.
- `start_cachedb` builds the tier and adds its counters to /metrics.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from resolver.server.metrics import Family, Histogram, Metrics, Sample, gauge
from resolver.service.cachedb_tier import (
    CacheDbSettings,
    CacheDbTier,
    ReadResult,
    StoreItem,
    WriteResult,
)

__all__ = ["CacheDbUrl", "RedisReplyStore", "start_cachedb"]

DEFAULT_PORT = 6379
#: A connection not made within this long fails (the read budget is shorter anyway).
CONNECT_TIMEOUT_S = 1.0
#: A command whose reply has not come within this long fails the connection.
SOCKET_TIMEOUT_S = 2.0
#: Connections to Redis at once, per process.
MAX_CONNECTIONS = 32
#: Read latency buckets, in seconds: loopback is well under a millisecond.
READ_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheDbUrl:
    """A --cachedb URL, checked."""

    tls: bool
    host: str
    port: int
    db: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> CacheDbUrl:
        """ValueError with what is wrong, in words, for anything but a usable URL."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"{text!r}: the URL must start with redis:// or rediss://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{text!r}: bad port") from None
        host = parts.hostname
        if not host:
            raise ValueError(f"{text!r}: no host")
        path = parts.path.strip("/")
        if path and not (path.isdigit() and int(path) < 2**31):
            raise ValueError(f"{text!r}: the database must be a number, as in redis://HOST/0")
        if parts.query or parts.fragment:
            raise ValueError(f"{text!r}: options after '?' or '#' are not read; "
                             "use the --cachedb-* options")
        return cls(tls=parts.scheme == "rediss", host=host, port=port or DEFAULT_PORT,
                   db=int(path) if path else 0,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)

    def __str__(self) -> str:
        """The URL without its password (for logs)."""
        scheme = "rediss" if self.tls else "redis"
        try:
            host = f"[{self.host}]" if ipaddress.ip_address(self.host).version == 6 else self.host
        except ValueError:
            host = self.host
        user = self.username or ""
        auth = f"{user}:***@" if self.password else (f"{user}@" if user else "")
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"


class RedisReplyStore:
    """The ReplyStore of resolver.service.cachedb_tier on one Redis database."""

    def __init__(self, url: CacheDbUrl, *, tls_ca_file: str | None = None) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.connection import BlockingConnectionPool, Connection, SSLConnection
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.description = str(url)
        tls: dict[str, Any] = {"ssl_ca_certs": tls_ca_file} if url.tls else {}
        # A bounded pool: a burst of misses waits for a connection (within its budget)
        # instead of opening hundreds of them.
        pool = BlockingConnectionPool(
            max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT_S,
            connection_class=SSLConnection if url.tls else Connection,
            host=url.host, port=url.port, db=url.db, username=url.username,
            password=url.password,
            socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),  # the breaker retries, not every query
            **tls,
        )
        self._pool = pool
        self._client = aioredis.Redis(connection_pool=pool)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self._client.mget(list(keys))
        return [value if isinstance(value, bytes) else None for value in values]

    async def claim(self, key: str, holder: str, lifetime_ms: int) -> bool:
        return bool(await self._client.set(key, holder, nx=True, px=max(1, lifetime_ms)))

    async def delete(self, keys: Sequence[str]) -> None:
        await self._client.delete(*keys)

    async def put_many(self, items: Sequence[StoreItem]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.set(item.key, item.value, ex=max(1, item.expire_s))
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()  # a pool handed to the client is not closed by it


def start_cachedb(settings: CacheDbSettings, *, stale_window_s: int, stale_ttl_s: int,
                  max_ttl_s: int, metrics: Metrics | None) -> CacheDbTier:
    """The tier on the Redis of `settings.url` (ValueError for a bad URL), counted in
    `metrics`. Nothing connects yet: the first query does, and the breaker rules after."""
    url = CacheDbUrl.parse(settings.url)
    latency = Histogram("resolver_cachedb_read_duration_seconds",
                        "Time a read of the shared cache took (hits, misses and errors).",
                        READ_BUCKETS_S)
    tier = CacheDbTier(RedisReplyStore(url, tls_ca_file=settings.tls_ca_file), settings,
                       wall_clock=time.time, monotonic=time.monotonic,
                       stale_window_s=stale_window_s, stale_ttl_s=stale_ttl_s,
                       longest_entry_s=max_ttl_s + stale_window_s,
                       holder=f"{socket.gethostname()}:{os.getpid()}",
                       on_read_seconds=latency.observe)
    if metrics is not None:
        metrics.add_collector(lambda: _families(tier, latency))
    return tier


def _families(tier: CacheDbTier, latency: Histogram) -> list[Family]:
    reads = Family(name="resolver_cachedb_reads_total", type="counter",
                   help="Reads of the shared cache, by result.",
                   samples=tuple(Sample(name="resolver_cachedb_reads_total",
                                        labels=(("result", r.value),), value=tier.reads[r])
                                 for r in ReadResult))
    writes = Family(name="resolver_cachedb_writes_total", type="counter",
                    help="Replies offered to the shared cache, by what became of them.",
                    samples=tuple(Sample(name="resolver_cachedb_writes_total",
                                         labels=(("result", w.value),), value=tier.writes[w])
                                  for w in WriteResult))
    opened = Family(name="resolver_cachedb_breaker_opened_total", type="counter",
                    help="Times the shared cache was found unavailable and skipped.",
                    samples=(Sample(name="resolver_cachedb_breaker_opened_total",
                                    value=tier.breaker.opened),))
    state = gauge("resolver_cachedb_breaker_state",
                  "The shared cache's circuit breaker: 0 closed (in use), 1 half open "
                  "(one trial), 2 open (skipped).", tier.breaker.state.gauge)
    return [reads, writes, opened, state, latency.family()]
