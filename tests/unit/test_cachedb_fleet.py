"""The shared cache across a fleet: `cache flush` reaches it, and one instance refreshes.

Instances are handlers over their own lab services on one dictionary store (as in
test_cachedb_tier); the wall clock is shared, as the fleet's clocks are.
"""

from __future__ import annotations

import asyncio

from resolver.dns.decoding import decode
from resolver.dns.extended_errors import ExtendedError
from resolver.dns.wire import RRType
from resolver.dnssec.canonical import canonical_name_wire
from resolver.service.cachedb_tier import ReadResult
from tests.support.labnet import FakeClock
from tests.unit.test_answer_cache import query
from tests.unit.test_cachedb_tier import NAME, UDP, DictStore, Instance, first_ttl

START = 1_700_000_000.0


def shared_by_a(store: DictStore, wall: FakeClock, *names: str) -> Instance:
    a = Instance(store, wall)
    for name in names or (NAME,):
        a.ask(query(name))
    a.drain()
    return a


def forget(instance: Instance, name: str, *, subtree: bool = False,
           rtype: int | None = None) -> bool:
    return asyncio.run(instance.tier.forget(canonical_name_wire(name), subtree=subtree,
                                            rtype=rtype))


def test_a_flushed_name_is_not_served_to_another_instance_from_the_shared_cache() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall)
    wall.advance(1)
    assert forget(a, NAME)
    b = Instance(store, wall)
    b.ask(query(NAME))
    assert b.tier.reads[ReadResult.FLUSHED] == 1 and b.upstream() > 0


def test_the_reply_written_after_a_flush_is_shared_again() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall)
    assert forget(a, NAME)
    wall.advance(1)
    b = Instance(store, wall)
    b.ask(query(NAME))
    b.drain()
    wall.advance(1)
    c = Instance(store, wall)
    c.ask(query(NAME))
    assert c.tier.reads[ReadResult.HIT] == 1 and c.upstream() == 0


def test_a_subtree_flush_voids_every_name_below_and_no_name_beside() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall, NAME, "networkutopia.com.", "cnn.com.")
    wall.advance(1)
    assert forget(a, "networkutopia.com.", subtree=True)
    b = Instance(store, wall)
    b.ask(query(NAME))
    b.ask(query("networkutopia.com."))
    assert b.tier.reads[ReadResult.FLUSHED] == 2
    b.ask(query("cnn.com."))
    assert b.tier.reads[ReadResult.HIT] == 1


def test_a_name_flush_leaves_the_names_below_it() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall, NAME, "networkutopia.com.")
    wall.advance(1)
    assert forget(a, "networkutopia.com.")
    b = Instance(store, wall)
    b.ask(query(NAME))
    assert b.tier.reads[ReadResult.HIT] == 1 and b.upstream() == 0


def test_a_type_flush_deletes_that_types_replies_in_every_variant_and_keeps_the_others() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = Instance(store, wall)
    a.ask(query(NAME))
    a.ask(query(NAME, qid=2, edns=1232, do=True))
    a.ask(query(NAME, qid=3, qtype=RRType.AAAA))
    a.drain()
    assert len(store.data) == 3
    assert forget(a, NAME, rtype=RRType.A)
    assert len(store.data) == 1  # the AAAA reply
    b = Instance(store, wall)
    b.ask(query(NAME, qtype=RRType.AAAA))
    assert b.tier.reads[ReadResult.HIT] == 1


def test_a_flush_marker_outlives_every_entry_it_can_void() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall)
    assert forget(a, NAME)
    marker = [key for key in store.data if ":flush:" in key]
    assert len(marker) == 1
    assert store.expiries[marker[0]] == a.tier.longest_entry_s
    assert max(store.expiries.values()) == a.tier.longest_entry_s


def test_an_expired_entry_is_resolved_by_the_instance_with_the_lock_and_the_next_waits_for_it(
) -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall)
    ttl = first_ttl(a.ask(query(NAME, qid=9)))
    wall.advance(ttl + 1)
    b, c = Instance(store, wall), Instance(store, wall)
    b.ask(query(NAME))  # expired in the store: b takes the lock and resolves it
    assert b.tier.reads[ReadResult.EXPIRED] == 1 and b.upstream() > 0

    async def c_waits_while_b_writes() -> bytes | None:
        asking = asyncio.ensure_future(c.handler.handle(query(NAME, qid=5), UDP))
        await asyncio.sleep(0.05)
        await b.tier.drain()  # b's fresh reply reaches the store while c waits
        return await asking

    answer = asyncio.run(c_waits_while_b_writes())
    assert answer is not None and decode(answer).answer
    assert c.tier.reads[ReadResult.REFRESHED] == 1 and c.upstream() == 0


def test_the_waiting_instance_resolves_itself_when_no_fresh_reply_comes() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall)
    wall.advance(first_ttl(a.ask(query(NAME, qid=9))) + 1)
    b, c = Instance(store, wall), Instance(store, wall)
    b.ask(query(NAME))  # holds the lock, never writes
    answer = c.ask(query(NAME))
    assert decode(answer).answer and c.upstream() > 0
    assert c.tier.reads[ReadResult.EXPIRED] == 1


def test_with_serve_stale_the_others_get_the_expired_reply_with_ede_3_and_a_30_s_ttl() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = Instance(store, wall)
    wall.advance(first_ttl(a.ask(query(NAME, edns=1232))) + 60)
    a.drain()
    b = Instance(store, wall, stale_window_s=3600)
    c = Instance(store, wall, stale_window_s=3600)
    b.ask(query(NAME, edns=1232))
    answer = decode(c.ask(query(NAME, edns=1232)))
    assert c.tier.reads[ReadResult.STALE] == 1 and c.upstream() == 0
    assert {rr.ttl for rr in answer.answer} == {30}
    assert answer.edns is not None
    assert [code for code, _ in answer.edns.options] == [15]
    assert int.from_bytes(answer.edns.options[0][1][:2], "big") == ExtendedError.STALE_ANSWER


def test_an_entry_in_its_last_tenth_is_refreshed_by_one_instance_and_served_by_all() -> None:
    store, wall = DictStore(), FakeClock(start=START)
    a = shared_by_a(store, wall)
    ttl = first_ttl(a.ask(query(NAME, qid=9)))
    wall.advance(ttl * 0.95)
    b, c = Instance(store, wall), Instance(store, wall)

    async def b_serves_and_refreshes() -> bytes | None:
        answer = await b.handler.handle(query(NAME), UDP)
        assert b.handler.shared_refreshes == 1
        while b.handler.shared_refreshes:
            await asyncio.sleep(0.001)
        await b.tier.drain()
        return answer

    served = asyncio.run(b_serves_and_refreshes())
    assert served is not None and first_ttl(served) <= ttl * 0.05 + 1
    assert b.upstream() > 0  # the one refresh
    c.ask(query(NAME))
    assert c.tier.reads[ReadResult.HIT] == 1 and c.upstream() == 0
    assert c.handler.shared_refreshes == 0
