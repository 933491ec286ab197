"""The shared second-level cache as the handler uses it: a budgeted read, a write behind.

Rules (Unbound's cachedb, made safe to lose):
- A read is asked only when memory missed (the handler decides that) and is given
  `read_budget_ms`: later than that, the answer is resolved upstream as if the shared cache
  had missed. A read never raises.
- A write never waits: the reply is put on a bounded queue that one background task sends in
  batches; a full queue drops the write (counted). The store's expiry is the reply's
  shortest TTL plus the serve-stale window.
- A store that fails or times out `failure_threshold` times in a row is skipped for
  `retry_s` (resolver.service.circuit_breaker), then tried with one request; one warning when
  it goes, one line when it is back. Meanwhile answers come from memory and upstream.
- What reaches the store is chosen by `resolver.service.cachedb.refusal_to_share`; what comes
  back is checked by `lowered_reply` before it is served.

The store is anything with `get` and `put_many` (`ReplyStore`); the Redis one is
`resolver.daemon.cachedb_redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from resolver.dnssec.security import Security
from resolver.service.cachedb import (
    KEY_PREFIX,
    ReplyVariant,
    cachedb_key,
    decode_stored,
    encode_stored,
    lowered_reply,
    min_ttl,
    refusal_to_share,
)
from resolver.service.circuit_breaker import BreakerState, CircuitBreaker

log = logging.getLogger("resolver.cachedb")

#: Most replies sent to the store in one round trip.
WRITE_BATCH = 64
#: A batch of writes not done within this long counts as a failure.
WRITE_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class StoreItem:
    key: str
    value: bytes
    expire_s: int  #: the store forgets the value after this many seconds


class ReplyStore(Protocol):
    """Where shared replies live (a Redis or Valkey database)."""

    #: Where it is, for logs: no password in it.
    description: str

    async def get(self, key: str) -> bytes | None: ...

    async def put_many(self, items: Sequence[StoreItem]) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheDbSettings:
    """`--cachedb` and its companions, as the operator wrote them."""

    #: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or rediss://... (TLS).
    url: str
    #: The key of the keyed hash that names entries (cachedb-secret).
    secret: str = ""
    #: How long a client's query waits for the shared cache before resolving anyway.
    read_budget_ms: float = 5.0
    #: Writes waiting to be sent; beyond, new ones are dropped.
    write_queue: int = 1000
    #: After an outage is detected, the store is tried again after this long.
    retry_s: float = 5.0
    #: Failures in a row that make it an outage.
    failure_threshold: int = 3
    #: CA certificates (PEM) to verify a rediss:// server with, instead of the system's.
    tls_ca_file: str | None = None


class ReadResult(enum.Enum):
    HIT = "hit"
    MISS = "miss"  #: nothing stored under the key
    EXPIRED = "expired"  #: stored, but no longer (or never) usable for this question
    CORRUPT = "corrupt"  #: a value that is not one of ours
    TIMEOUT = "timeout"  #: no answer within the read budget
    ERROR = "error"  #: the store failed (connection refused, reset, protocol error)
    SKIPPED = "skipped"  #: not asked: the breaker is open


class WriteResult(enum.Enum):
    QUEUED = "queued"
    WRITTEN = "written"
    REFUSED = "refused"  #: not a reply to share (refusal_to_share)
    DROPPED = "dropped"  #: the queue was full
    SKIPPED = "skipped"  #: the breaker is open
    ERROR = "error"


class CacheDbTier:
    def __init__(
        self,
        store: ReplyStore,
        settings: CacheDbSettings,
        *,
        wall_clock: Callable[[], float],
        monotonic: Callable[[], float],
        stale_window_s: int = 0,
        on_read_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._secret = settings.secret.encode()
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._budget_s = settings.read_budget_ms / 1000
        #: Added to a reply's TTL for the store's expiry (serve-stale's max-stale-ttl).
        self.stale_window_s = stale_window_s
        self._on_read_seconds = on_read_seconds
        self.breaker = CircuitBreaker(clock=monotonic, failure_threshold=settings.failure_threshold,
                                      retry_s=settings.retry_s, on_transition=self._transition)
        self._queue: asyncio.Queue[StoreItem] = asyncio.Queue(maxsize=settings.write_queue)
        self.reads: dict[ReadResult, int] = dict.fromkeys(ReadResult, 0)
        self.writes: dict[WriteResult, int] = dict.fromkeys(WriteResult, 0)
        self._last_error = ""

    # -- reading ------------------------------------------------------------------

    async def fetch(self, question: bytes, variant: ReplyVariant) -> bytes | None:
        """The shared reply to `question` with its TTLs lowered by its age, or None.

        `question` is lower-cased name wire, QTYPE and QCLASS (scanner.question_key).
        """
        result, reply = await self._read(question, variant)
        self.reads[result] += 1
        return reply

    async def _read(self, question: bytes, variant: ReplyVariant
                    ) -> tuple[ReadResult, bytes | None]:
        if not self.breaker.allow():
            return ReadResult.SKIPPED, None
        key = cachedb_key(self._secret, question, variant)
        started = self._monotonic()
        # Shielded: a read past its budget goes on to its end (bounded by the client's socket
        # timeout), so the connection it runs on stays usable instead of being torn down.
        pending = asyncio.ensure_future(self.store.get(key))
        pending.add_done_callback(_consume_outcome)
        try:
            value = await asyncio.wait_for(asyncio.shield(pending), self._budget_s)
        except TimeoutError:
            self._failed(f"no answer within {self.settings.read_budget_ms:g} ms")
            return ReadResult.TIMEOUT, None
        except Exception as exc:  # any failure of the store is a miss, never the client's
            self._failed(_describe(exc))
            return ReadResult.ERROR, None
        finally:
            if self._on_read_seconds is not None:
                self._on_read_seconds(self._monotonic() - started)
        self.breaker.success()
        if value is None:
            return ReadResult.MISS, None
        stored = decode_stored(value)
        if stored is None:
            return ReadResult.CORRUPT, None
        reply = lowered_reply(stored, question, self._wall_clock())
        if reply is None:
            return ReadResult.EXPIRED, None
        return ReadResult.HIT, reply

    # -- writing ------------------------------------------------------------------

    def submit(self, question: bytes, variant: ReplyVariant, reply: bytes,
               security: Security | None) -> WriteResult:
        """Queue `reply` for the store (never waits). `security` is the answer's DNSSEC
        status, None while the resolver does not validate."""
        result = self._enqueue(question, variant, reply, security)
        self.writes[result] += 1
        return result

    def _enqueue(self, question: bytes, variant: ReplyVariant, reply: bytes,
                 security: Security | None) -> WriteResult:
        if refusal_to_share(reply, security) is not None:
            return WriteResult.REFUSED
        if self.breaker.state is not BreakerState.CLOSED:
            return WriteResult.SKIPPED
        item = StoreItem(key=cachedb_key(self._secret, question, variant),
                         value=encode_stored(reply, self._wall_clock()),
                         expire_s=min_ttl(reply) + self.stale_window_s)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return WriteResult.DROPPED
        return WriteResult.QUEUED

    async def warm_up(self, timeout_s: float) -> bool:
        """Open a connection before the first client needs one (a connection, TLS above all,
        takes longer than a read's budget). False if the store did not answer: the breaker
        counts it, and the log says so once it opens."""
        try:
            await asyncio.wait_for(self.store.get(KEY_PREFIX + "warm-up"), timeout_s)
        except Exception as exc:
            self._failed(_describe(exc) if not isinstance(exc, TimeoutError)
                         else f"no answer within {timeout_s:g} s")
            return False
        self.breaker.success()
        return True

    async def run_writer(self) -> None:
        """Send queued writes in batches until cancelled."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def drain(self) -> int:
        """Send every write queued now (at shutdown, within the caller's bound); returns
        how many there were."""
        sent = 0
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(WRITE_BATCH,
                                                               self._queue.qsize()))]
            await self._write(batch)
            sent += len(batch)
        return sent

    async def _write(self, batch: list[StoreItem]) -> None:
        if not self.breaker.allow():
            self.writes[WriteResult.SKIPPED] += len(batch)
            return
        try:
            await asyncio.wait_for(self.store.put_many(batch), WRITE_TIMEOUT_S)
        except Exception as exc:  # TimeoutError included: the writes are lost, nothing else
            self.writes[WriteResult.ERROR] += len(batch)
            self._failed(_describe(exc) if not isinstance(exc, TimeoutError)
                         else f"writes not done within {WRITE_TIMEOUT_S:g} s")
            return
        self.breaker.success()
        self.writes[WriteResult.WRITTEN] += len(batch)

    async def close(self, *, drain_s: float = 0.0) -> None:
        """Send what is queued, for `drain_s` at most (after that it is lost: it is only a
        cache), and close the store's connections."""
        if drain_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), drain_s)
        try:
            await self.store.close()
        except Exception as exc:  # leaving anyway
            log.debug("cachedb %s: close failed: %s", self.store.description, _describe(exc))

    # -- the breaker ----------------------------------------------------------------

    def _failed(self, why: str) -> None:
        self._last_error = why
        self.breaker.failure()

    def _transition(self, old: BreakerState, new: BreakerState) -> None:
        where = self.store.description
        if old is BreakerState.CLOSED and new is BreakerState.OPEN:
            log.warning("cachedb %s unavailable (%s): skipped, answering from memory and "
                        "upstream; retrying every %g s", where, self._last_error,
                        self.settings.retry_s)
        elif new is BreakerState.CLOSED:
            log.info("cachedb %s available again", where)
        else:  # the trials of one outage: not worth a line each
            log.debug("cachedb %s: breaker %s -> %s", where, old.value, new.value)


def _consume_outcome(task: asyncio.Future[bytes | None]) -> None:
    """Fetch the outcome of a read nobody waits for any more (no "never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
