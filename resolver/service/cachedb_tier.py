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
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from resolver.dnssec.security import Security
from resolver.service.cachedb import (
    KEY_PREFIX,
    Freshness,
    ReplyVariant,
    StoredReply,
    cachedb_key,
    decode_stored,
    encode_stored,
    freshness,
    lowered_reply,
    min_ttl,
    refusal_to_share,
    stale_reply,
)
from resolver.service.cachedb_flush import (
    FlushScope,
    encode_marker,
    flushed_before,
    marker_key,
    markers_covering,
    variant_keys,
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

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values under `keys`, None where nothing is stored, in one round trip."""
        ...

    async def put_many(self, items: Sequence[StoreItem]) -> None: ...

    async def claim(self, key: str, holder: str, lifetime_ms: int) -> bool:
        """Store `holder` under `key` for `lifetime_ms` unless something is there already
        (Redis SET NX PX): True for the one caller that got it."""
        ...

    async def delete(self, keys: Sequence[str]) -> None: ...

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
    #: How long the instance refreshing an expired or nearly expired entry holds its lock.
    refresh_lock_ms: int = 2_000
    #: How long a query for an entry another instance is refreshing waits for the fresh
    #: reply (when no stale answer may be given) before resolving it itself.
    refresh_wait_ms: float = 300.0


class ReadResult(enum.Enum):
    HIT = "hit"
    MISS = "miss"  #: nothing stored under the key
    EXPIRED = "expired"  #: stored, but no longer (or never) usable for this question
    CORRUPT = "corrupt"  #: a value that is not one of ours
    TIMEOUT = "timeout"  #: no answer within the read budget
    ERROR = "error"  #: the store failed (connection refused, reset, protocol error)
    SKIPPED = "skipped"  #: not asked: the breaker is open
    FLUSHED = "flushed"  #: stored before a `cache flush` that covers it
    #: Expired; another instance holds the refresh lock, so the stale reply is served.
    STALE = "stale"
    #: Expired; another instance held the refresh lock, and its fresh reply arrived in time.
    REFRESHED = "refreshed"


class WriteResult(enum.Enum):
    QUEUED = "queued"
    WRITTEN = "written"
    REFUSED = "refused"  #: not a reply to share (refusal_to_share)
    DROPPED = "dropped"  #: the queue was full
    SKIPPED = "skipped"  #: the breaker is open
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SharedReply:
    """A reply read from the shared cache, ready to be served."""

    reply: bytes
    #: Expired data served while another instance refreshes it (RFC 8767: EDE 3, short TTL).
    stale: bool = False
    #: In the last tenth of its TTL and this instance holds the refresh lock: the caller
    #: resolves the question again in the background, so the fleet refreshes it once.
    refresh: bool = False


class CacheDbTier:
    def __init__(
        self,
        store: ReplyStore,
        settings: CacheDbSettings,
        *,
        wall_clock: Callable[[], float],
        monotonic: Callable[[], float],
        stale_window_s: int = 0,
        stale_ttl_s: int = 30,
        longest_entry_s: int = 86_400,
        holder: str = "resolver",
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
        self._stale_ttl_s = stale_ttl_s
        #: No entry is stored for longer (cache-max-ttl plus the stale window); a flush
        #: marker lives that long, so it outlives whatever it voids.
        self.longest_entry_s = longest_entry_s
        #: Who holds a refresh lock (host and process), for whoever looks at the store.
        self._holder = holder
        self._on_read_seconds = on_read_seconds
        self.breaker = CircuitBreaker(clock=monotonic, failure_threshold=settings.failure_threshold,
                                      retry_s=settings.retry_s, on_transition=self._transition)
        self._queue: asyncio.Queue[StoreItem] = asyncio.Queue(maxsize=settings.write_queue)
        self.reads: dict[ReadResult, int] = dict.fromkeys(ReadResult, 0)
        self.writes: dict[WriteResult, int] = dict.fromkeys(WriteResult, 0)
        self._last_error = ""

    # -- reading ------------------------------------------------------------------

    async def fetch(self, question: bytes, variant: ReplyVariant) -> SharedReply | None:
        """The shared reply to `question` with its TTLs lowered by its age, or None.

        `question` is lower-cased name wire, QTYPE and QCLASS (scanner.question_key).
        """
        result, shared = await self._read(question, variant)
        self.reads[result] += 1
        return shared

    async def _read(self, question: bytes, variant: ReplyVariant
                    ) -> tuple[ReadResult, SharedReply | None]:
        if not self.breaker.allow():
            return ReadResult.SKIPPED, None
        key = cachedb_key(self._secret, question, variant)
        started = self._monotonic()
        try:
            outcome, stored = await self._look(key, question)
            if outcome is _Lookup.EXPIRED and stored is not None:
                return await self._expired(key, question, stored)
        finally:
            if self._on_read_seconds is not None:
                self._on_read_seconds(self._monotonic() - started)
        if outcome is _Lookup.FAILED:
            return ReadResult.ERROR, None
        if outcome is _Lookup.TIMEOUT:
            return ReadResult.TIMEOUT, None
        if stored is None or outcome in _NOT_SERVED:
            return _NOT_SERVED.get(outcome, ReadResult.MISS), None
        reply = lowered_reply(stored, question, self._wall_clock())
        assert reply is not None  # FRESH or DUE
        if outcome is _Lookup.DUE and await self._claim(key):
            return ReadResult.HIT, SharedReply(reply, refresh=True)
        return ReadResult.HIT, SharedReply(reply)

    async def _look(self, key: str, question: bytes) -> tuple[_Lookup, StoredReply | None]:
        """`_lookup` within the read budget."""
        found = await self._budgeted(self._lookup(key, question))
        return (found, None) if isinstance(found, _Lookup) else found

    async def _lookup(self, key: str, question: bytes
                      ) -> tuple[_Lookup, StoredReply | None]:
        """The reply under `key` and the flush markers that could cover it, in one round trip."""
        values = await self.store.get_many([key, *markers_covering(self._secret, question)])
        if values[0] is None:
            return _Lookup.MISS, None
        stored = decode_stored(values[0])
        if stored is None:
            return _Lookup.CORRUPT, None
        if flushed_before(stored.stored_at, values[1:]):
            return _Lookup.FLUSHED, None
        state = freshness(stored, question, self._wall_clock())
        return _FROM_FRESHNESS[state], stored

    async def _expired(self, key: str, question: bytes, stored: StoredReply
                       ) -> tuple[ReadResult, SharedReply | None]:
        """An expired entry: one instance of the fleet resolves it again (the one that gets the
        refresh lock); the others serve it stale if they may (RFC 8767), else wait a little
        for the fresh reply the refreshing instance writes."""
        if await self._claim(key):
            return ReadResult.EXPIRED, None  # ours to resolve; the write-behind replaces it
        if self.stale_window_s > 0:
            stale = stale_reply(stored, question, self._wall_clock(), self._stale_ttl_s)
            if stale is not None:
                return ReadResult.STALE, SharedReply(stale, stale=True)
        for _ in range(math.ceil(self.settings.refresh_wait_ms / 1000 / _REFRESH_POLL_S)):
            await asyncio.sleep(_REFRESH_POLL_S)
            outcome, fresh = await self._look(key, question)
            if outcome in (_Lookup.FRESH, _Lookup.DUE) and fresh is not None:
                reply = lowered_reply(fresh, question, self._wall_clock())
                if reply is not None:
                    return ReadResult.REFRESHED, SharedReply(reply)
            if outcome is not _Lookup.EXPIRED:
                break  # gone, flushed or the store failed: resolve it here
        return ReadResult.EXPIRED, None

    async def _claim(self, key: str) -> bool:
        """Take the refresh lock of `key`; False if another instance holds it (or the store
        does not answer within the budget: then nobody is known to refresh it, and the
        caller resolves it as without the lock)."""
        lock = key + _LOCK_SUFFIX
        pending = self.store.claim(lock, self._holder, self.settings.refresh_lock_ms)
        outcome = await self._budgeted(pending)
        return outcome is True or outcome is _Lookup.FAILED or outcome is _Lookup.TIMEOUT

    async def _budgeted(self, work: Awaitable[_T]) -> _T | _Lookup:
        """`work` within the read budget; _Lookup.TIMEOUT or FAILED (counted by the breaker)."""
        # Shielded: a read past its budget goes on to its end (bounded by the client's socket
        # timeout), so the connection it runs on stays usable instead of being torn down.
        pending = asyncio.ensure_future(work)
        pending.add_done_callback(_consume_outcome)
        try:
            value = await asyncio.wait_for(asyncio.shield(pending), self._budget_s)
        except TimeoutError:
            self._failed(f"no answer within {self.settings.read_budget_ms:g} ms")
            return _Lookup.TIMEOUT
        except Exception as exc:  # any failure of the store is a miss, never the client's
            self._failed(_describe(exc))
            return _Lookup.FAILED
        self.breaker.success()
        return value

    # -- flushing -----------------------------------------------------------------

    async def forget(self, name_wire: bytes, *, subtree: bool = False,
                     rtype: int | None = None) -> bool:
        """Make the shared cache forget `name_wire` (lower-cased wire form): one type's
        replies are deleted, a whole name or subtree gets a flush marker
        (resolver.service.cachedb_flush). False if the store could not be told."""
        if not self.breaker.allow():
            return False
        try:
            if rtype is not None and not subtree:
                work = self.store.delete(variant_keys(self._secret, name_wire, rtype))
            else:
                scope = FlushScope.TREE if subtree else FlushScope.NAME
                marker = StoreItem(key=marker_key(self._secret, scope, name_wire),
                                   value=encode_marker(self._wall_clock()),
                                   expire_s=self.longest_entry_s)
                work = self.store.put_many([marker])
            await asyncio.wait_for(work, WRITE_TIMEOUT_S)
        except Exception as exc:  # TimeoutError included
            self._failed(_describe(exc) if not isinstance(exc, TimeoutError)
                         else f"flush not done within {WRITE_TIMEOUT_S:g} s")
            return False
        self.breaker.success()
        return True

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
                         expire_s=min(min_ttl(reply) + self.stale_window_s,
                                      self.longest_entry_s))
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
            await asyncio.wait_for(self.store.get_many([KEY_PREFIX + "warm-up"]), timeout_s)
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


class _Lookup(enum.Enum):
    """What one look at the store found (before the refresh lock is considered)."""

    MISS = "miss"
    CORRUPT = "corrupt"
    FLUSHED = "flushed"
    UNUSABLE = "unusable"
    FRESH = "fresh"
    DUE = "due"
    EXPIRED = "expired"
    TIMEOUT = "timeout"
    FAILED = "failed"


_FROM_FRESHNESS = {Freshness.FRESH: _Lookup.FRESH, Freshness.DUE: _Lookup.DUE,
                   Freshness.EXPIRED: _Lookup.EXPIRED, Freshness.UNUSABLE: _Lookup.UNUSABLE}
#: Lookups that serve nothing, and how they are counted.
_NOT_SERVED = {_Lookup.MISS: ReadResult.MISS, _Lookup.CORRUPT: ReadResult.CORRUPT,
               _Lookup.FLUSHED: ReadResult.FLUSHED, _Lookup.UNUSABLE: ReadResult.EXPIRED,
               _Lookup.EXPIRED: ReadResult.EXPIRED}
#: A refresh lock's key is the entry's with this after it.
_LOCK_SUFFIX = ":refresh"
#: How often a query waiting for another instance's refresh looks again.
_REFRESH_POLL_S = 0.025

_T = TypeVar("_T")


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """Fetch the outcome of a read nobody waits for any more (no "never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
