"""The shared cache in the handler: two resolvers on one store, a store that hangs or fails.

Each "instance" is a handler over its own lab service (own record and answer caches, own
upstream counter); the store is a dictionary standing in for Redis, so that what is shared,
when it is read and what a failing store costs can be checked without a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from resolver.dns.decoding import decode
from resolver.dns.wire import Rcode
from resolver.engine.network import Transport, UpstreamError
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.service.cachedb import ReplyVariant
from resolver.service.cachedb_tier import (
    CacheDbSettings,
    CacheDbTier,
    ReadResult,
    StoreItem,
    WriteResult,
)
from resolver.service.circuit_breaker import BreakerState
from tests.support.labnet import FakeClock, LabNetwork, lab_service
from tests.unit.test_answer_cache import query
from tests.unit.test_cachedb import QUESTION, reply

UDP = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
NAME = "www.networkutopia.com."


class DictStore:
    """Redis as a dictionary: what was put, with its expiry, and how often it was read."""

    description = "memory"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.expiries: dict[str, int] = {}
        self.gets = 0
        #: Locks taken with claim(): key -> holder (they never expire here).
        self.locks: dict[str, str] = {}

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.gets += 1
        return [self.data.get(key) for key in keys]

    async def put_many(self, items: Sequence[StoreItem]) -> None:
        for item in items:
            self.data[item.key] = item.value
            self.expiries[item.key] = item.expire_s

    async def claim(self, key: str, holder: str, lifetime_ms: int) -> bool:
        if key in self.locks:
            return False
        self.locks[key] = holder
        return True

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    async def close(self) -> None:
        return None


class HangingStore(DictStore):
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.gets += 1
        await asyncio.sleep(3600)
        return []


class RefusingStore(DictStore):
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.gets += 1
        raise ConnectionRefusedError("connection refused")

    async def put_many(self, items: Sequence[StoreItem]) -> None:
        raise ConnectionRefusedError("connection refused")


class Instance:
    """One resolver: its own service, caches and upstream count, on a shared store."""

    def __init__(self, store: DictStore, wall: FakeClock, *, budget_ms: float = 5.0,
                 stale_window_s: int = 0, queue: int = 1000) -> None:
        self.clock = FakeClock()
        self.network = LabNetwork(self.clock)
        self.service = lab_service(self.clock, self.network)
        self.tier = CacheDbTier(
            store, CacheDbSettings(url="redis://127.0.0.1", secret="s", read_budget_ms=budget_ms,
                                   write_queue=queue),
            wall_clock=wall, monotonic=self.clock, stale_window_s=stale_window_s)
        self.handler = QueryHandler(self.service, cachedb=self.tier)

    def ask(self, wire: bytes) -> bytes:
        answer = asyncio.run(self.handler.handle(wire, UDP))
        assert answer is not None
        return answer

    def upstream(self) -> int:
        return sum(self.network.received.values())

    def drain(self) -> int:
        return asyncio.run(self.tier.drain())


def first_ttl(data: bytes) -> int:
    return decode(data).answer[0].ttl


def test_instance_b_answers_what_only_a_resolved_with_the_ttl_lowered_and_no_upstream() -> None:
    store, wall = DictStore(), FakeClock(start=1_700_000_000.0)
    a, b = Instance(store, wall), Instance(store, wall)
    from_a = a.ask(query(NAME, edns=1232))
    assert a.upstream() > 0 and a.drain() == 1
    wall.advance(10.4)
    from_b = b.ask(query(NAME, qid=0x7777, edns=1232))
    assert b.upstream() == 0
    assert b.tier.reads[ReadResult.HIT] == 1
    assert from_b[:2] == b"\x77\x77"
    assert decode(from_b).answer[0].rdata_key == decode(from_a).answer[0].rdata_key
    assert first_ttl(from_b) == first_ttl(from_a) - 10


def test_a_hit_is_kept_in_memory_so_the_next_query_does_not_read_the_store() -> None:
    store, wall = DictStore(), FakeClock(start=1_700_000_000.0)
    a, b = Instance(store, wall), Instance(store, wall)
    a.ask(query(NAME))
    a.drain()
    b.ask(query(NAME))
    reads = store.gets
    b.ask(query(NAME, qid=2))
    assert store.gets == reads and b.upstream() == 0


def test_the_store_is_not_read_when_the_record_cache_knows_the_answer() -> None:
    store, wall = DictStore(), FakeClock()
    a = Instance(store, wall)
    a.ask(query(NAME))
    reads = store.gets
    a.handler.answers.clear()  # the reply bytes are gone, the RRsets are not
    a.ask(query(NAME, qid=2))
    assert store.gets == reads


def test_do_bit_queries_do_not_get_replies_stored_for_plain_queries() -> None:
    store, wall = DictStore(), FakeClock()
    a, b = Instance(store, wall), Instance(store, wall)
    a.ask(query(NAME, edns=1232))
    a.drain()
    b.ask(query(NAME, edns=1232, do=True))
    assert b.tier.reads[ReadResult.MISS] == 1 and b.upstream() > 0


def test_store_expiry_is_the_shortest_ttl_plus_the_stale_window() -> None:
    store, wall = DictStore(), FakeClock()
    a = Instance(store, wall, stale_window_s=3600)
    answer = a.ask(query(NAME))
    a.drain()
    shortest = min(rr.ttl for rr in (*decode(answer).answer, *decode(answer).authority))
    assert list(store.expiries.values()) == [shortest + 3600]


def test_a_hanging_store_costs_a_query_only_its_budget_then_is_skipped() -> None:
    store, wall = HangingStore(), FakeClock()
    a = Instance(store, wall, budget_ms=5.0)
    for number in range(3):
        answer = a.ask(query(f"x{number}.networkutopia.com."))
        assert answer[3] & 0xF == 3  # NXDOMAIN from upstream: answered anyway
    assert a.tier.reads[ReadResult.TIMEOUT] == 3
    assert a.tier.breaker.state is BreakerState.OPEN
    a.ask(query("x9.networkutopia.com."))
    assert store.gets == 3 and a.tier.reads[ReadResult.SKIPPED] == 1


def test_a_refusing_store_is_a_miss_answers_keep_coming_from_upstream() -> None:
    store, wall = RefusingStore(), FakeClock()
    a = Instance(store, wall)
    answer = a.ask(query(NAME))
    assert answer[3] & 0xF == 0 and decode(answer).answer
    assert a.tier.reads[ReadResult.ERROR] == 1
    assert a.drain() == 1 and a.tier.writes[WriteResult.ERROR] == 1


def test_writes_are_skipped_while_the_breaker_is_open_and_retried_after() -> None:
    store, wall = DictStore(), FakeClock()
    a = Instance(store, wall)
    for _ in range(3):
        a.tier.breaker.failure()
    variant = ReplyVariant(edns=True)
    assert a.tier.submit(QUESTION, variant, reply(), security=None) is WriteResult.SKIPPED
    a.clock.advance(5.0)
    assert a.tier.breaker.allow()  # the trial
    a.tier.breaker.success()
    assert a.tier.submit(QUESTION, variant, reply(), security=None) is WriteResult.QUEUED


def test_a_full_write_queue_drops_instead_of_waiting() -> None:
    store, wall = DictStore(), FakeClock()
    a = Instance(store, wall, queue=2)
    results = [a.tier.submit(QUESTION, ReplyVariant(), reply(), security=None)
               for _ in range(3)]
    assert results == [WriteResult.QUEUED, WriteResult.QUEUED, WriteResult.DROPPED]


def test_a_corrupt_value_under_the_key_is_a_miss_and_the_name_is_resolved() -> None:
    store, wall = DictStore(), FakeClock()
    a, b = Instance(store, wall), Instance(store, wall)
    a.ask(query(NAME))
    a.drain()
    for key in store.data:
        store.data[key] = b"garbage" * 10
    answer = b.ask(query(NAME))
    assert b.tier.reads[ReadResult.CORRUPT] == 1 and b.upstream() > 0
    assert decode(answer).answer


def test_servfail_is_not_written() -> None:
    """The name servers of networkutopia.com fail at once: SERVFAIL, and nothing shared."""
    store, wall = DictStore(), FakeClock()
    a = Instance(store, wall)
    a.network.failing["127.212.212.1"] = UpstreamError("unreachable")
    answer = a.ask(query(NAME))
    assert answer[3] & 0xF == 2
    a.drain()
    assert store.data == {}
    assert a.tier.submit(QUESTION, ReplyVariant(), reply(rcode=Rcode.SERVFAIL),
                         security=None) is WriteResult.REFUSED
